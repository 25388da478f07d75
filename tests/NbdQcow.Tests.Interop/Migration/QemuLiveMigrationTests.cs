using System.Text.Json;
using NbdQcow.Tests.Interop.Infrastructure;

namespace NbdQcow.Tests.Interop.Migration;

/// <summary>
/// Real qemu-system-x86_64 migrations (TCG, -machine none: no guest is booted, so the disk I/O is qemu's own,
/// issued with HMP qemu-io inside each qemu; the migration stream, block inactivation and activation are the real
/// ones) with nbdqcow as the disk: on shared storage (both qemus use one export), and without (the source mirrors
/// into an export, nbdqcow hands the image over, the destination qemu opens the file).
/// </summary>
public sealed class QemuLiveMigrationTests
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task Live_migration_on_a_shared_export_keeps_what_was_written_before_and_after_the_switch()
    {
        using var folder = new TempDirectory("livemig");
        var image = folder.File("shared.qcow2");
        await QemuImage.CreateQcow2Async(image, "64M");
        await using var server = await ServerProcess.StartAsync(new ServeOptions { ImagePath = image, UnixSocket = true, ExportName = "disk" });
        var disk = $"{{\"driver\":\"nbd\",\"node-name\":\"disk0\",\"export\":\"disk\",\"server\":{{\"type\":\"unix\",\"path\":{JsonSerializer.Serialize(server.SocketPath)}}}}}";
        var port = FreeTcpPort.Find();
        await using var source = await QemuQmpProcess.StartSystemAsync(["-blockdev", disk], folder.Path);
        await using var destination = await QemuQmpProcess.StartSystemAsync(["-blockdev", disk, "-incoming", $"tcp:127.0.0.1:{port}"], folder.Path);
        string Context() => source.Describe() + "\n" + destination.Describe() + "\n" + server.Describe();

        await source.QemuIoAsync("disk0", "write -P 0x11 1M 64k");
        await source.QemuIoAsync("disk0", "write -P 0x12 40M 1M");
        await MigrateAsync(source, port, Context);
        await destination.Qmp.WaitForEventAsync("RESUME", null, Bound);

        await destination.QemuIoAsync("disk0", "read -P 0x11 1M 64k");
        await destination.QemuIoAsync("disk0", "read -P 0x12 40M 1M");
        await destination.QemuIoAsync("disk0", "write -P 0x22 2M 64k");
        await destination.QemuIoAsync("disk0", "read -P 0x22 2M 64k");
        // The source handed its node over at the switch: it no longer writes.
        var late = await source.Qmp.ExecuteAsync("human-monitor-command",
            new Dictionary<string, object> { ["command-line"] = "qemu-io disk0 \"write -P 0x33 3M 64k\"" });
        Assert.Contains("read-only", (string?)late ?? "");

        await source.QuitAsync();
        await destination.QuitAsync();
        (await ToolRunner.RunAsync("qemu-io", "-f", "raw", "-c", "read -P 0x11 1M 64k", "-c", "read -P 0x22 2M 64k",
            "-c", "read -P 0 3M 64k", server.Uri("disk"))).EnsureSuccess(Context());
        await server.StopAndAssertCleanExitAsync();
        await QemuImage.AssertCheckCleanAsync(image, Context());
    }

    [Fact]
    public async Task Storage_migration_mirrors_into_an_export_that_hands_the_image_to_the_destination_qemu()
    {
        using var folder = new TempDirectory("storagemig");
        var sourceImage = folder.File("src.qcow2");
        await QemuImage.CreateQcow2Async(sourceImage, "64M");
        await QemuImage.IoAsync(sourceImage, "qcow2", "write -P 0x44 8M 1M");
        var targetImage = folder.File("tgt.qcow2");
        await QemuImage.CreateQcow2Async(targetImage, "64M");
        var control = folder.File("tgt.ctl");
        await using var server = await ServerProcess.StartAsync(new ServeOptions
        {
            ImagePath = targetImage,
            UnixSocket = true,
            ExportName = "disk",
            ExtraArguments = ["--control", control],
        });
        var port = FreeTcpPort.Find();
        await using var source = await QemuQmpProcess.StartSystemAsync(["-blockdev", Qcow2Node(sourceImage)], folder.Path);
        // The destination opens its disk at start-up, inactive (as an incoming qemu does) while nbdqcow writes it.
        await using var destination = await QemuQmpProcess.StartSystemAsync(
            ["-blockdev", Qcow2Node(targetImage), "-incoming", $"tcp:127.0.0.1:{port}"], folder.Path);
        string Context() => source.Describe() + "\n" + destination.Describe() + "\n" + server.Describe();
        Assert.Contains("\"write\" lock", (await ToolRunner.RunAsync("qemu-img", "info", targetImage)).EnsureFailure(Context()).Stderr);

        var qmp = source.Qmp;
        await qmp.ExecuteAsync("blockdev-add", new Dictionary<string, object>
        {
            ["driver"] = "nbd",
            ["node-name"] = "target",
            ["export"] = "disk",
            ["server"] = new Dictionary<string, object> { ["type"] = "unix", ["path"] = server.SocketPath! },
        });
        await qmp.ExecuteAsync("blockdev-mirror", new Dictionary<string, object>
        {
            ["job-id"] = "m0",
            ["device"] = "disk0",
            ["target"] = "target",
            ["sync"] = "full",
        });
        await source.QemuIoAsync("disk0", "write -P 0x55 1M 64k");
        await qmp.WaitForEventAsync("BLOCK_JOB_READY", e => (string?)e["data"]?["device"] == "m0", Bound);
        await source.QemuIoAsync("disk0", "write -P 0x66 2M 64k");
        // Switch-over as libvirt does it: the source stops, the ready mirror is cancelled (the copy stays complete),
        // the target is let go, and nbdqcow hands the image over before the destination activates it.
        await qmp.ExecuteAsync("stop");
        await qmp.ExecuteAsync("block-job-cancel", new Dictionary<string, object> { ["device"] = "m0" });
        var done = await qmp.WaitForEventAsync("BLOCK_JOB_COMPLETED", e => (string?)e["data"]?["device"] == "m0", Bound);
        Assert.True(done["data"]?["error"] is null, $"mirror failed: {done.ToJsonString()}\n{Context()}");
        await qmp.ExecuteAsync("blockdev-del", new Dictionary<string, object> { ["node-name"] = "target" });
        (await ToolRunner.RunAsync(RepositoryRoot.Launcher, "control", control, "inactivate")).EnsureSuccess(Context());
        // Handed over: no writer holds the image (a reader may look), and it is clean.
        (await ToolRunner.RunAsync("qemu-img", "info", targetImage)).EnsureSuccess(Context());
        await QemuImage.AssertCheckCleanAsync(targetImage, Context());

        await MigrateAsync(source, port, Context);
        await destination.Qmp.ExecuteAsync("cont");
        await destination.QemuIoAsync("disk0", "read -P 0x44 8M 1M");
        await destination.QemuIoAsync("disk0", "read -P 0x55 1M 64k");
        await destination.QemuIoAsync("disk0", "read -P 0x66 2M 64k");
        await destination.QemuIoAsync("disk0", "write -P 0x77 3M 64k");
        // Now the destination qemu writes the file: nbdqcow cannot take it back.
        var back = await ToolRunner.RunAsync(RepositoryRoot.Launcher, "control", control, "activate");
        Assert.Equal(1, back.ExitCode);
        Assert.Contains("Failed to get \\\"write\\\" lock", back.Stdout);

        await destination.QuitAsync();
        await source.QuitAsync();
        await server.StopAndAssertCleanExitAsync();
        await QemuImage.AssertCheckCleanAsync(targetImage, Context());
        (await ToolRunner.RunAsync("qemu-io", "-r", "-f", "qcow2", "-c", "read -P 0x44 8M 1M", "-c", "read -P 0x66 2M 64k",
            "-c", "read -P 0x77 3M 64k", targetImage)).EnsureSuccess(Context());
    }

    private static string Qcow2Node(string path) =>
        $"{{\"driver\":\"qcow2\",\"node-name\":\"disk0\",\"file\":{{\"driver\":\"file\",\"filename\":{JsonSerializer.Serialize(path)}}}}}";

    /// <summary>migrate to the -incoming destination on 127.0.0.1 and wait (bounded) until the source reports completed.</summary>
    private static async Task MigrateAsync(QemuQmpProcess source, int port, Func<string> context)
    {
        await source.Qmp.ExecuteAsync("migrate", new Dictionary<string, object> { ["uri"] = $"tcp:127.0.0.1:{port}" });
        var deadline = DateTime.UtcNow + Bound;
        while (true)
        {
            var status = (string?)(await source.Qmp.ExecuteAsync("query-migrate"))?["status"];
            if (status == "completed")
            {
                return;
            }
            Assert.True(status != "failed" && DateTime.UtcNow < deadline, $"migration {status}\n{context()}");
            await Task.Delay(100);
        }
    }
}
