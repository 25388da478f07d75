using System.Text.Json;
using NbdQcow.Tests.Interop.Infrastructure;

namespace NbdQcow.Tests.Interop.Raw;

/// <summary>A second server on an address already served is refused, so clients never land on the wrong image.</summary>
public sealed class ListenAddressTests
{
    private const int Mib = 1 << 20;
    private static readonly TimeSpan SecondServerTimeout = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task SecondServerOnTheSameTcpPortExitsOneWithAddressAlreadyInUse()
    {
        await using var first = await ServedImage.StartRawAsync(16L * Mib);
        using var folder = new TempDirectory("second");
        var other = folder.File("other.img");
        RawImageFile.CreateSparse(other, 32L * Mib);
        var address = $"127.0.0.1:{first.Server.Port}";

        var second = await ToolRunner.RunAsync(RepositoryRoot.Launcher, ["serve", other, "--listen", address],
            SecondServerTimeout);

        Assert.True(second.ExitCode == 1, second.Describe("second server on the same port did not exit 1"));
        Assert.Contains($"{address}: address already in use", second.Stderr);
        Assert.DoesNotContain("listening", second.Stdout);
        // Every client still reaches the first server's image.
        for (var i = 0; i < 4; i++)
        {
            var info = (await ToolRunner.RunAsync("nbdinfo", ["--size", first.Uri()])).EnsureSuccess(first.Server.Describe());
            Assert.Equal((16L * Mib).ToString(), info.Stdout.Trim());
        }

        await first.Server.StopAndAssertCleanExitAsync();
    }

    [Fact]
    public async Task SecondServerOnALiveUnixSocketIsRefusedAndAStaleSocketFileIsReplaced()
    {
        await using var first = await ServedImage.StartRawAsync(16L * Mib, new ServeOptions { UnixSocket = true });
        using var folder = new TempDirectory("second");
        var other = folder.File("other.img");
        RawImageFile.CreateSparse(other, 32L * Mib);

        var refused = await ToolRunner.RunAsync(RepositoryRoot.Launcher, ["serve", other, "--socket", first.Server.SocketPath!],
            SecondServerTimeout);
        Assert.True(refused.ExitCode == 1, refused.Describe("second server on a live Unix socket did not exit 1"));
        Assert.Contains("address already in use", refused.Stderr);
        Assert.Contains(first.Server.SocketPath!, refused.Stderr);
        var info = (await ToolRunner.RunAsync("nbdinfo", ["--size", first.Uri()])).EnsureSuccess(first.Server.Describe());
        Assert.Equal((16L * Mib).ToString(), info.Stdout.Trim());
        await first.Server.StopAndAssertCleanExitAsync();

        // A socket file nobody listens on (a server that died without removing it) is replaced.
        var stale = folder.File("stale.sock");
        // (.NET removes the file when a bound socket is disposed; a Python process exiting leaves it behind.)
        (await ToolRunner.RunAsync(ToolRunner.Python,
            ["-c", "import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])", stale])).EnsureSuccess();
        Assert.True(File.Exists(stale));
        await using var replacing = await ServerProcess.StartAsync(new ServeOptions
        {
            ImagePath = other,
            ExtraArguments = ["--socket", stale], // and TCP, which the start-up probe uses
        });
        var json = (await ToolRunner.RunAsync("nbdinfo", ["--json", $"nbd+unix:///?socket={stale}"]))
            .EnsureSuccess(replacing.Describe());
        using var document = JsonDocument.Parse(json.Stdout);
        Assert.Equal(32L * Mib, document.RootElement.GetProperty("exports")[0].GetProperty("export-size").GetInt64());
        await replacing.StopAndAssertCleanExitAsync();
    }
}
