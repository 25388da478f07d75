using System.Diagnostics;
using System.Security.Cryptography;
using NbdQcow.Tests.Interop.Infrastructure;

namespace NbdQcow.Tests.Interop.Migration;

/// <summary>
/// `--bitmap NAME` on an image with backing files, compared with qemu-nbd -B NAME on the same chain: the bitmap is
/// looked up from the served image down the chain and the first layer holding that name serves it; a backing file
/// is never written (no in-use mark there, as in qemu, which opens backing files read-only); a name in no layer,
/// or an inconsistent bitmap in a backing file, is refused by both servers.
/// </summary>
public sealed class QemuBackingBitmapTests
{
    [Fact]
    public async Task A_bitmap_in_a_backing_file_is_served_as_qemu_nbd_serves_it_and_the_backing_file_stays_untouched()
    {
        using var folder = new TempDirectory("backing-bitmap");
        // The base is shorter than the top: past the base's end its bitmap reads as clean, as in qemu.
        var baseImage = folder.File("base.qcow2");
        await QemuImage.CreateQcow2Async(baseImage, "32M");
        (await ToolRunner.RunAsync("qemu-img", "bitmap", "--add", baseImage, "b0")).EnsureSuccess();
        await QemuImage.IoAsync(baseImage, "qcow2", "write -P 1 1M 64k", "write -P 2 20M 128k");
        (await ToolRunner.RunAsync("qemu-img", "bitmap", "--add", "-g", "128k", baseImage, "shadowed")).EnsureSuccess();
        await QemuImage.IoAsync(baseImage, "qcow2", "write -P 3 5M 64k");
        var middle = folder.File("mid.qcow2");
        await QemuImage.CreateQcow2Async(middle, "64M", backing: baseImage, backingFormat: "qcow2");
        (await ToolRunner.RunAsync("qemu-img", "bitmap", "--add", "--disable", middle, "frozen")).EnsureSuccess();
        await QemuImage.IoAsync(middle, "qcow2", "write -P 4 8M 64k");
        var top = folder.File("top.qcow2");
        await QemuImage.CreateQcow2Async(top, "64M", backing: middle, backingFormat: "qcow2");
        // The top's own "shadowed" hides the base's bitmap of that name.
        (await ToolRunner.RunAsync("qemu-img", "bitmap", "--add", top, "shadowed")).EnsureSuccess();
        await QemuImage.IoAsync(top, "qcow2", "write -P 5 40M 64k");
        var baseHash = await HashAsync(baseImage);
        var middleHash = await HashAsync(middle);
        string[] names = ["b0", "shadowed", "frozen"];

        var ours = new Dictionary<string, List<QemuMetaContextTests.MapEntry>>();
        await using (var server = await ServerProcess.StartAsync(new ServeOptions
        {
            ImagePath = top,
            UnixSocket = true,
            ExtraArguments = ["--bitmap", "b0", "--bitmap", "shadowed", "--bitmap", "frozen"],
        }))
        {
            // A write through nbdqcow lands in the top: the top's live bitmap records it, the backing files' do not.
            (await ToolRunner.RunAsync("qemu-io", "-f", "raw", "-c", "write -P 6 50M 64k", server.Uri())).EnsureSuccess(server.Describe());
            foreach (var name in names)
            {
                ours[name] = await QemuMetaContextTests.MapAsync(server.Uri(), $"qemu:dirty-bitmap:{name}", server.Describe());
            }
            // Only the served image's enabled bitmap is marked in use while served; the backing files are not written.
            Assert.Equal(["auto", "in-use"], await QemuMetaContextTests.BitmapFlagsAsync(top, "shadowed", shared: true));
            Assert.Equal(["auto"], await QemuMetaContextTests.BitmapFlagsAsync(baseImage, "b0", shared: true));
            Assert.Equal(["auto"], await QemuMetaContextTests.BitmapFlagsAsync(baseImage, "shadowed", shared: true));
            Assert.Empty(await QemuMetaContextTests.BitmapFlagsAsync(middle, "frozen", shared: true));
            await server.StopAndAssertCleanExitAsync();
        }
        Assert.Equal(baseHash, await HashAsync(baseImage));
        Assert.Equal(middleHash, await HashAsync(middle));
        Assert.Contains(ours["b0"], e => e.Offset == 20 << 20 && e.Length == 128 << 10 && e.Type == 1);
        Assert.Contains(ours["shadowed"], e => e.Offset == 50 << 20 && e.Type == 1);
        Assert.DoesNotContain(ours["b0"], e => e.Offset >= 32 << 20 && e.Type == 1);

        await using var qemuNbd = await QemuNbdProcess.StartAsync(top, "qcow2", readOnly: true,
            extraArguments: ["-B", "b0", "-B", "shadowed", "-B", "frozen"]);
        var uri = $"nbd+unix:///?socket={qemuNbd.SocketPath}";
        foreach (var name in names)
        {
            Assert.Equal(await QemuMetaContextTests.MapAsync(uri, $"qemu:dirty-bitmap:{name}", qemuNbd.Output), ours[name]);
        }
    }

    [Fact]
    public async Task A_name_in_no_layer_or_an_inconsistent_bitmap_in_a_backing_file_is_refused_as_qemu_nbd_refuses_it()
    {
        using var folder = new TempDirectory("backing-bitmap");
        var baseImage = folder.File("base.qcow2");
        await QemuImage.CreateQcow2Async(baseImage, "64M");
        (await ToolRunner.RunAsync("qemu-img", "bitmap", "--add", baseImage, "b0")).EnsureSuccess();
        (await ToolRunner.RunAsync("qemu-img", "bitmap", "--add", baseImage, "b1")).EnsureSuccess();
        var top = folder.File("top.qcow2");
        await QemuImage.CreateQcow2Async(top, "64M", backing: baseImage, backingFormat: "qcow2");
        (await ToolRunner.RunAsync("qemu-img", "bitmap", "--add", top, "t0")).EnsureSuccess();

        var missing = await ServeAsync(folder, top, "nope");
        Assert.Equal(1, missing.ExitCode);
        Assert.Contains("bitmap \"nope\" cannot be exported: no such persistent bitmap in the image or its backing files " +
            $"(have: t0 in {top}; b0, b1 in {baseImage})", missing.Stderr);
        Assert.Contains("Bitmap 'nope' is not found", (await QemuNbdAsync(folder, top, "nope")).EnsureFailure().Stderr);

        // A server killed while it tracked b0 in the base (served directly) leaves it in use: inconsistent.
        await using (var server = await ServerProcess.StartAsync(new ServeOptions { ImagePath = baseImage, UnixSocket = true }))
        {
            (await ToolRunner.RunAsync("qemu-io", "-f", "raw", "-c", "write -P 5 1M 64k", "-c", "flush", server.Uri())).EnsureSuccess(server.Describe());
            using var process = Process.GetProcessById(server.ProcessId);
            process.Kill();
            await server.StopAsync();
        }
        Assert.Equal(["auto", "in-use"], await QemuMetaContextTests.BitmapFlagsAsync(baseImage, "b0", shared: false));
        var baseHash = await HashAsync(baseImage);

        var inconsistent = await ServeAsync(folder, top, "b0");
        Assert.Equal(1, inconsistent.ExitCode);
        Assert.Contains($"bitmap \"b0\" cannot be exported: in backing file {baseImage}: is inconsistent", inconsistent.Stderr);
        Assert.Contains("Bitmap 'b0' is inconsistent", (await QemuNbdAsync(folder, top, "b0")).EnsureFailure().Stderr);
        Assert.Equal(baseHash, await HashAsync(baseImage));
    }

    private static Task<ToolResult> ServeAsync(TempDirectory folder, string image, string bitmap) =>
        ToolRunner.RunAsync(RepositoryRoot.Launcher, ["serve", image, "--socket", folder.File("n.sock"), "--bitmap", bitmap],
            TimeSpan.FromSeconds(60));

    private static Task<ToolResult> QemuNbdAsync(TempDirectory folder, string image, string bitmap) =>
        ToolRunner.RunAsync("qemu-nbd", ["-r", "-B", bitmap, "--socket", folder.File("q.sock"), "-f", "qcow2", image],
            TimeSpan.FromSeconds(30));

    private static async Task<string> HashAsync(string path)
    {
        await using var file = File.OpenRead(path);
        return Convert.ToHexStringLower(await SHA256.HashDataAsync(file));
    }
}
