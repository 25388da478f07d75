using NbdQcow.Tests.Interop.Infrastructure;

namespace NbdQcow.Tests.Interop.Formats;

/// <summary>
/// The Bochs format (one folder, image/Bochs, and one line in the format registry) served by the real server and
/// read by qemu-img, against qemu reading the same file itself: probed by its magic, as a qcow2 backing file, and
/// refused with one line when damaged.
/// </summary>
public sealed class RegisteredFormatTests : IDisposable
{
    private const long Size = 4L << 20;
    private static readonly long[] Written = [0, 1, 7, 128, 200, 4095, 4096, 8191];

    private readonly TempDirectory _folder = new("registered-format");

    public void Dispose() => _folder.Dispose();

    [Fact]
    public async Task Bochs_image_is_probed_and_serves_what_qemu_reads_from_it()
    {
        var path = _folder.File("disk.bochs");
        BochsImageFile.Write(path, Size, Written);
        await using var server = await ServerProcess.StartAsync(new ServeOptions { ImagePath = path });
        var info = await ToolRunner.RunAsync("nbdinfo", ["--json", server.Uri()]);
        info.EnsureSuccess(server.Describe());
        Assert.Contains("\"is_read_only\": true", info.Stdout);
        Assert.Contains($"\"export-size\": {Size}", info.Stdout);
        (await ToolRunner.RunAsync("qemu-img", ["compare", "-f", "bochs", "-F", "raw", path, server.Uri()])).EnsureSuccess(server.Describe());
        // The pattern check proves both readers are right, not merely the same.
        var copy = _folder.File("copy.raw");
        (await ToolRunner.RunAsync("qemu-img", ["convert", "-f", "raw", "-O", "raw", server.Uri(), copy])).EnsureSuccess(server.Describe());
        var bytes = await File.ReadAllBytesAsync(copy);
        for (long sector = 0; sector < Size / 512; sector++)
        {
            var expected = Array.IndexOf(Written, sector) >= 0 ? BochsImageFile.Pattern(sector) : new byte[512];
            Assert.True(expected.AsSpan().SequenceEqual(bytes.AsSpan((int)sector * 512, 512)), $"sector {sector}");
        }
        await server.StopAndAssertCleanExitAsync();
    }

    [Fact]
    public async Task Qcow2_with_a_bochs_backing_file_reads_through_to_it()
    {
        var backing = _folder.File("base.bochs");
        BochsImageFile.Write(backing, Size, Written);
        var top = _folder.File("top.qcow2");
        (await ToolRunner.RunAsync("qemu-img", ["create", "-q", "-f", "qcow2", "-b", "base.bochs", "-F", "bochs", top])).EnsureSuccess();
        (await ToolRunner.RunAsync("qemu-io", ["-f", "qcow2", "-c", "write -P 0x5a 64k 64k", top])).EnsureSuccess();
        await using var server = await ServerProcess.StartAsync(new ServeOptions { ImagePath = top, ReadOnly = true });
        (await ToolRunner.RunAsync("qemu-img", ["compare", "-f", "qcow2", "-F", "raw", top, server.Uri()])).EnsureSuccess(server.Describe());
        await server.StopAndAssertCleanExitAsync();
    }

    [Fact]
    public async Task Damaged_bochs_catalog_is_refused_naming_the_entry()
    {
        var path = _folder.File("bad.bochs");
        BochsImageFile.Write(path, Size, Written);
        await using (var file = new FileStream(path, FileMode.Open, FileAccess.Write))
        {
            // Catalog entry 3 names an extent far past the end of the file.
            file.Position = 512 + 3 * 4;
            file.Write([0x00, 0x00, 0x10, 0x00]);
        }
        await ServerProcess.EnsureLauncherBuiltAsync();
        var result = await ToolRunner.RunAsync(RepositoryRoot.Launcher, ["serve", path, "--listen", "127.0.0.1:0"], TimeSpan.FromSeconds(60));
        Assert.Equal(1, result.ExitCode);
        Assert.Contains("bochs catalog[3] = 1048576: the extent lies past the end of the file", result.Stderr);
    }
}
