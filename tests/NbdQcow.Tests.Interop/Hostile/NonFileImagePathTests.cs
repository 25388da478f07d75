using NbdQcow.Tests.Interop.Infrastructure;

namespace NbdQcow.Tests.Interop.Hostile;

/// <summary>
/// An image path that names a FIFO or a folder: every command that opens it refuses it at once with one line
/// naming the path and what it is. Opening a FIFO for reading waits for a writer, so without the check the
/// commands hung forever (serve even through SIGTERM, stuck in open(2) before its signal handling ran).
/// </summary>
public sealed class NonFileImagePathTests
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(30);

    public static TheoryData<string> Commands => new() { "serve", "info", "check", "recover" };

    private static string[] Arguments(string command, string image, TempDirectory folder) => command switch
    {
        "serve" => ["serve", image, "--socket", folder.File("s.sock")],
        "recover" => ["recover", image, "--output", folder.File("out.qcow2")],
        _ => [command, image],
    };

    [Theory]
    [MemberData(nameof(Commands))]
    public async Task AFifoAsTheImageIsRefusedAtOnceWithOneLine(string command)
    {
        using var folder = new TempDirectory("fifo-image");
        var fifo = folder.File("disk.qcow2");
        (await ToolRunner.RunAsync("mkfifo", fifo)).EnsureSuccess();
        await ServerProcess.EnsureLauncherBuiltAsync();

        var result = await ToolRunner.RunAsync(RepositoryRoot.Launcher, Arguments(command, fifo, folder), Bound);

        Assert.NotEqual(0, result.ExitCode);
        Assert.Contains(fifo, result.Stderr);
        Assert.Contains("it is a FIFO, not a file", result.Stderr);
        Assert.False(File.Exists(folder.File("out.qcow2")), result.Describe("recover wrote an output for a FIFO"));
    }

    [Fact]
    public async Task AFolderAsTheImageIsRefusedWithOneLine()
    {
        using var folder = new TempDirectory("folder-image");
        var directory = folder.File("disk.img");
        Directory.CreateDirectory(directory);
        await ServerProcess.EnsureLauncherBuiltAsync();

        var result = await ToolRunner.RunAsync(RepositoryRoot.Launcher, ["serve", directory, "--socket", folder.File("s.sock"), "--read-only"], Bound);

        Assert.NotEqual(0, result.ExitCode);
        Assert.Single(result.Stderr.Trim().Split('\n'));
        Assert.Contains("it is a folder, not a file", result.Stderr);
    }
}
