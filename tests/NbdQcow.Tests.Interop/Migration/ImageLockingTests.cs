using System.Diagnostics;
using NbdQcow.Tests.Interop.Infrastructure;

namespace NbdQcow.Tests.Interop.Migration;

/// <summary>
/// nbdqcow locks images as qemu 7.2 does (OFD locks on bytes 100+ and 200+ of the image file), with real processes on
/// both sides: qemu writers are refused while nbdqcow serves, nbdqcow is refused while qemu-nbd or another nbdqcow
/// writes, readers share, and a killed server's locks are gone.
/// </summary>
public sealed class ImageLockingTests
{
    private static readonly TimeSpan RefusalTimeout = TimeSpan.FromSeconds(60);

    [Theory]
    [InlineData("qcow2")]
    [InlineData("raw")]
    public async Task Qemu_writers_are_refused_with_qemus_lock_error_while_nbdqcow_serves_and_qemu_img_info_U_still_reads(string format)
    {
        await using var image = await StartAsync(format);

        var write = (await ToolRunner.RunAsync("qemu-io", ["-f", format, "-c", "write -P 0x77 0 4k", image.ImagePath]))
            .EnsureFailure(image.Server.Describe());
        Assert.Contains("Failed to get \"write\" lock", write.Stderr);
        var qemuNbd = (await ToolRunner.RunAsync("qemu-nbd", ["--format", format, "--socket", image.Folder.File("q.sock"), image.ImagePath],
            RefusalTimeout)).EnsureFailure(image.Server.Describe());
        Assert.Contains("Failed to get \"write\" lock", qemuNbd.Stderr);

        var info = (await ToolRunner.RunAsync("qemu-img", ["info", "-U", "-f", format, image.ImagePath])).EnsureSuccess(image.Server.Describe());
        Assert.Contains("virtual size: 16 MiB", info.Stdout);
        if (format == "qcow2")
        {
            // Without -U a qcow2 reader does not share writing, as qemu-img refuses an image a VM runs on.
            var refused = (await ToolRunner.RunAsync("qemu-img", ["info", image.ImagePath])).EnsureFailure();
            Assert.Contains("Failed to get shared \"write\" lock", refused.Stderr);
        }

        await image.Server.StopAndAssertCleanExitAsync();
        // Once the server is gone the same qemu-io write goes through: the refusal was the lock, nothing else.
        (await ToolRunner.RunAsync("qemu-io", ["-f", format, "-c", "write -P 0x77 0 4k", image.ImagePath])).EnsureSuccess();
    }

    [Fact]
    public async Task Nbdqcow_refuses_an_image_qemu_nbd_writes_and_names_qemu_nbd_without_touching_the_image()
    {
        await ServerProcess.EnsureLauncherBuiltAsync();
        using var folder = new TempDirectory("lock");
        var image = folder.File("disk.qcow2");
        await QemuImage.CreateQcow2Async(image, "16M");
        await using var qemuNbd = await QemuNbdProcess.StartAsync(image, "qcow2");
        var before = QemuImage.Sha256(image);

        var serve = (await ToolRunner.RunAsync(RepositoryRoot.Launcher, ["serve", image, "--socket", folder.File("n.sock")], RefusalTimeout))
            .EnsureFailure(qemuNbd.Output);
        Assert.Equal(1, serve.ExitCode);
        Assert.Contains(image, serve.Stderr);
        Assert.Contains("Failed to get \"write\" lock", serve.Stderr);
        Assert.Contains($"qemu-nbd, pid {qemuNbd.ProcessId}", serve.Stderr);
        Assert.Contains("--force-share", serve.Stderr);

        var readOnly = (await ToolRunner.RunAsync(RepositoryRoot.Launcher, ["serve", image, "--read-only", "--socket", folder.File("r.sock")],
            RefusalTimeout)).EnsureFailure();
        Assert.Contains("Failed to get shared \"write\" lock", readOnly.Stderr);
        (await ToolRunner.RunAsync(RepositoryRoot.Launcher, ["info", image])).EnsureFailure();
        (await ToolRunner.RunAsync(RepositoryRoot.Launcher, ["check", image])).EnsureFailure();
        var info = (await ToolRunner.RunAsync(RepositoryRoot.Launcher, ["info", "--force-share", "--json", image])).EnsureSuccess();
        Assert.Contains("\"virtual-size\": 16777216", info.Stdout);
        (await ToolRunner.RunAsync(RepositoryRoot.Launcher, ["check", "-U", image])).EnsureSuccess();
        Assert.Equal(before, QemuImage.Sha256(image));

        // Served read-only with --force-share (qemu's -U), nbdqcow reads what was written through qemu-nbd before it opened.
        (await ToolRunner.RunAsync("qemu-io", ["-f", "raw", "-c", "write -P 0x5c 1M 64k", $"nbd+unix:///?socket={qemuNbd.SocketPath}"]))
            .EnsureSuccess(qemuNbd.Output);
        await using var shared = await ServerProcess.StartAsync(new ServeOptions
        {
            ImagePath = image,
            UnixSocket = true,
            ReadOnly = true,
            ExtraArguments = ["--force-share"],
        });
        (await ToolRunner.RunAsync("qemu-io", ["-r", "-f", "raw", "-c", "read -P 0x5c 1M 64k", shared.Uri()])).EnsureSuccess(shared.Describe());
        await shared.StopAndAssertCleanExitAsync();
    }

    [Fact]
    public async Task A_second_nbdqcow_writer_is_refused_while_read_only_servers_share_with_each_other_and_with_qemu_readers()
    {
        await using var image = await StartAsync("qcow2");
        var second = (await ToolRunner.RunAsync(RepositoryRoot.Launcher, ["serve", image.ImagePath, "--socket", image.Folder.File("2.sock")],
            RefusalTimeout)).EnsureFailure(image.Server.Describe());
        Assert.Contains("Failed to get \"write\" lock", second.Stderr);
        Assert.Contains($"nbdqcow, pid {image.Server.ProcessId}", second.Stderr);
        await image.Server.StopAndAssertCleanExitAsync();

        var readOnly = new ServeOptions { ImagePath = image.ImagePath, UnixSocket = true, ReadOnly = true };
        await using var first = await ServerProcess.StartAsync(readOnly);
        await using var other = await ServerProcess.StartAsync(readOnly);
        (await ToolRunner.RunAsync("qemu-img", ["info", image.ImagePath])).EnsureSuccess(first.Describe());
        (await ToolRunner.RunAsync("qemu-io", ["-r", "-f", "qcow2", "-c", "read -P 0 0 4k", image.ImagePath])).EnsureSuccess();
        (await ToolRunner.RunAsync(RepositoryRoot.Launcher, ["check", image.ImagePath])).EnsureSuccess();
        (await ToolRunner.RunAsync("qemu-io", ["-r", "-f", "raw", "-c", "read -P 0 0 4k", other.Uri()])).EnsureSuccess(other.Describe());
        // Readers do not share writing: neither qemu nor nbdqcow may write now.
        (await ToolRunner.RunAsync("qemu-io", ["-f", "qcow2", "-c", "write 0 4k", image.ImagePath])).EnsureFailure();
        var writer = (await ToolRunner.RunAsync(RepositoryRoot.Launcher, ["serve", image.ImagePath, "--socket", image.Folder.File("w.sock")],
            RefusalTimeout)).EnsureFailure();
        Assert.Contains("Failed to get \"write\" lock", writer.Stderr);
        await first.StopAndAssertCleanExitAsync();
        await other.StopAndAssertCleanExitAsync();
    }

    [Fact]
    public async Task A_server_killed_with_SIGKILL_leaves_no_lock_behind()
    {
        await using var image = await StartAsync("qcow2");
        (await ToolRunner.RunAsync("qemu-io", ["-f", "qcow2", "-c", "write 0 4k", image.ImagePath])).EnsureFailure();
        using (var victim = Process.GetProcessById(image.Server.ProcessId))
        {
            victim.Kill();
            await victim.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(10));
        }

        (await ToolRunner.RunAsync("qemu-io", ["-f", "qcow2", "-c", "write -P 0x31 0 4k", image.ImagePath])).EnsureSuccess();
        await using var next = await ServerProcess.StartAsync(new ServeOptions { ImagePath = image.ImagePath, UnixSocket = true });
        (await ToolRunner.RunAsync("qemu-io", ["-f", "raw", "-c", "read -P 0x31 0 4k", next.Uri()])).EnsureSuccess(next.Describe());
        await next.StopAndAssertCleanExitAsync();
    }

    [Fact]
    public async Task No_lock_serves_an_image_qemu_nbd_holds_and_force_share_is_refused_for_a_writer()
    {
        await ServerProcess.EnsureLauncherBuiltAsync();
        using var folder = new TempDirectory("lock");
        var image = folder.File("disk.qcow2");
        await QemuImage.CreateQcow2Async(image, "16M");
        var refused = (await ToolRunner.RunAsync(RepositoryRoot.Launcher, ["serve", image, "--force-share", "--socket", folder.File("f.sock")],
            RefusalTimeout)).EnsureFailure();
        Assert.Contains("force-share needs a read-only export", refused.Stderr);

        await using var qemuNbd = await QemuNbdProcess.StartAsync(image, "qcow2");
        await using var server = await ServerProcess.StartAsync(new ServeOptions
        {
            ImagePath = image,
            UnixSocket = true,
            ReadOnly = true,
            ExtraArguments = ["--no-lock"],
        });
        (await ToolRunner.RunAsync("qemu-io", ["-r", "-f", "raw", "-c", "read -P 0 0 4k", server.Uri()])).EnsureSuccess(server.Describe());
        await server.StopAndAssertCleanExitAsync();
    }

    private static Task<ServedImage> StartAsync(string format) =>
        ServedImage.StartAsync(async path =>
        {
            if (format == "qcow2")
            {
                await QemuImage.CreateQcow2Async(path, "16M");
            }
            else
            {
                RawImageFile.CreateSparse(path, 16L << 20);
            }
        }, format == "qcow2" ? "disk.qcow2" : "disk.img", new ServeOptions { UnixSocket = true });
}
