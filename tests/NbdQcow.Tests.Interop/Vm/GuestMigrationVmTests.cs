using System.Diagnostics;
using System.Text.Json;
using NbdQcow.Tests.Interop.Infrastructure;
using Xunit.Abstractions;

namespace NbdQcow.Tests.Interop.Vm;

/// <summary>
/// A running guest migrated between two qemu-system-x86_64 processes (TCG) on 127.0.0.1 while it writes files to
/// its ext4 disk, with nbdqcow as the disk: on shared storage (both qemus are clients of one export), and without
/// (the source mirrors its local disk into an export, which nbdqcow hands over to the destination qemu at the
/// switch-over, as libvirt does it). The guest (tests/vm/guest-init.sh, migrate mode) prints the manifest of the
/// files written before the migration, writes a file after file until the destination tells it the switch-over is
/// done, reads every file back there, writes more and prints the final manifest; the host checks the image
/// (qemu-img check, e2fsck, every file against the manifest) and the image locks at each step.
/// </summary>
public sealed class GuestMigrationVmTests(ITestOutputHelper output)
{
    private const string ExportName = "disk";
    private static readonly TimeSpan BootTimeout = TimeSpan.FromSeconds(90);
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task Guest_live_migrated_on_a_shared_export_keeps_the_files_written_before_during_and_after_the_switch()
    {
        var guestDirectory = await GuestBuild.EnsureBuiltAsync();
        var clock = Stopwatch.StartNew();
        using var work = new TempDirectory("vmmig");
        var image = work.File("shared.qcow2");
        await QemuImage.CreateQcow2Async(image, MigratingGuest.DiskSize.ToString(System.Globalization.CultureInfo.InvariantCulture));
        await using var server = await ServerProcess.StartAsync(new ServeOptions
        {
            ImagePath = image,
            UnixSocket = true,
            ExportName = ExportName,
        });
        var disk = NbdNode(server.SocketPath!);
        var port = FreeTcpPort.Find();
        await using var source = await MigratingGuest.StartAsync(guestDirectory, work.Path, "source", disk);
        await using var destination = await MigratingGuest.StartAsync(guestDirectory, work.Path, "destination", disk, port);
        string Context() => source.Describe() + "\n" + destination.Describe() + "\n" + server.Describe();

        try
        {
            await source.WaitForLineAsync(MigratingGuest.ReadyMarker, BootTimeout, Context);
            Phase(clock, "guest booted and wrote its first files");
            // The export is the image's one writer: nothing else may open it for writing beside it.
            await AssertSecondWriterRefusedAsync(image, Context);

            await MigrateAsync(source.Qemu, port, pauseBeforeSwitchover: false, Context);
            await destination.Qemu.Qmp.WaitForEventAsync("RESUME", null, Bound);
            Phase(clock, "migrated, the destination runs");
            // The source let go of its disk at the switch: its node no longer writes.
            var late = await source.Qemu.Qmp.ExecuteAsync("human-monitor-command",
                new Dictionary<string, object> { ["command-line"] = $"qemu-io {MigratingGuest.DiskNode} \"write 0 4k\"" });
            Assert.Contains("read-only", (string?)late ?? "");
            await AssertSecondWriterRefusedAsync(image, Context);

            await destination.SignalSwitchOverDoneAsync(Bound, Context);
            await destination.AssertPassedAsync(Bound, Context);
            Phase(clock, "the guest checked every file and powered off");
        }
        finally
        {
            Report(clock, source, destination);
        }

        await source.Qemu.QuitAsync();
        await server.StopAndAssertCleanExitAsync();
        await AssertManifestsAsync(source, destination, image, work.Path);
        Phase(clock, "image checked on the host");
    }

    [Fact]
    public async Task Guest_storage_migrated_into_an_export_that_hands_the_image_to_the_destination_keeps_every_file()
    {
        var guestDirectory = await GuestBuild.EnsureBuiltAsync();
        var clock = Stopwatch.StartNew();
        using var work = new TempDirectory("vmmig");
        var size = MigratingGuest.DiskSize.ToString(System.Globalization.CultureInfo.InvariantCulture);
        var sourceImage = work.File("src.qcow2");
        await QemuImage.CreateQcow2Async(sourceImage, size);
        var targetImage = work.File("tgt.qcow2");
        await QemuImage.CreateQcow2Async(targetImage, size);
        var control = work.File("tgt.ctl");
        await using var server = await ServerProcess.StartAsync(new ServeOptions
        {
            ImagePath = targetImage,
            UnixSocket = true,
            ExportName = ExportName,
            ExtraArguments = ["--control", control],
        });
        var port = FreeTcpPort.Find();
        await using var source = await MigratingGuest.StartAsync(guestDirectory, work.Path, "source", Qcow2Node(sourceImage));
        // The destination opens its disk at start-up, inactive as an incoming qemu does, while nbdqcow writes it.
        await using var destination = await MigratingGuest.StartAsync(guestDirectory, work.Path, "destination",
            Qcow2Node(targetImage), port);
        string Context() => source.Describe() + "\n" + destination.Describe() + "\n" + server.Describe();

        try
        {
            await source.WaitForLineAsync(MigratingGuest.ReadyMarker, BootTimeout, Context);
            Phase(clock, "guest booted and wrote its first files");
            var qmp = source.Qemu.Qmp;
            await qmp.ExecuteAsync("blockdev-add", new Dictionary<string, object>
            {
                ["driver"] = "nbd",
                ["node-name"] = "target",
                ["export"] = ExportName,
                ["server"] = new Dictionary<string, object> { ["type"] = "unix", ["path"] = server.SocketPath! },
            });
            await qmp.ExecuteAsync("blockdev-mirror", new Dictionary<string, object>
            {
                ["job-id"] = "m0",
                ["device"] = MigratingGuest.DiskNode,
                ["target"] = "target",
                ["sync"] = "full",
            });
            await qmp.WaitForEventAsync("BLOCK_JOB_READY", e => (string?)e["data"]?["device"] == "m0", Bound);
            Phase(clock, "mirror ready");
            // nbdqcow, active, is the target's one writer.
            await AssertSecondWriterRefusedAsync(targetImage, Context);

            // The guest keeps writing through the migration; the mirror keeps copying its writes until the source
            // pauses before the switch-over. Then, as libvirt does it: the ready mirror is cancelled (its copy is
            // complete), the target let go, nbdqcow hands the image over, and the migration finishes.
            await MigrateAsync(source.Qemu, port, pauseBeforeSwitchover: true, Context);
            Phase(clock, "migration paused before the switch-over");
            await qmp.ExecuteAsync("block-job-cancel", new Dictionary<string, object> { ["device"] = "m0" });
            var done = await qmp.WaitForEventAsync("BLOCK_JOB_COMPLETED", e => (string?)e["data"]?["device"] == "m0", Bound);
            Assert.True(done["data"]?["error"] is null, $"mirror failed: {done.ToJsonString()}\n{Context()}");
            await qmp.ExecuteAsync("blockdev-del", new Dictionary<string, object> { ["node-name"] = "target" });
            var handedOver = (await ToolRunner.RunAsync(RepositoryRoot.Launcher, "control", control, "inactivate"))
                .EnsureSuccess(Context());
            Assert.Contains("\"inactive\"", handedOver.Stdout);
            // Handed over: nobody writes the image now (both sides inactive), and nbdqcow left it clean.
            await QemuImage.AssertCheckCleanAsync(targetImage, Context());

            await qmp.ExecuteAsync("migrate-continue", new Dictionary<string, object> { ["state"] = "pre-switchover" });
            await WaitForMigrationStatusAsync(source.Qemu, "completed", Context);
            await destination.Qemu.Qmp.WaitForEventAsync("RESUME", null, Bound);
            Phase(clock, "image handed over, migrated, the destination runs");
            // The destination qemu owns the image now: nbdqcow cannot take it back, nor can anyone else write it.
            var back = await ToolRunner.RunAsync(RepositoryRoot.Launcher, "control", control, "activate");
            Assert.Equal(1, back.ExitCode);
            Assert.Contains("Failed to get \\\"write\\\" lock", back.Stdout);
            await AssertSecondWriterRefusedAsync(targetImage, Context);

            await destination.SignalSwitchOverDoneAsync(Bound, Context);
            await destination.AssertPassedAsync(Bound, Context);
            Phase(clock, "the guest checked every file and powered off");
        }
        finally
        {
            Report(clock, source, destination);
        }

        await source.Qemu.QuitAsync();
        await server.StopAndAssertCleanExitAsync();
        await AssertManifestsAsync(source, destination, targetImage, work.Path);
        Phase(clock, "image checked on the host");
    }

    private static string NbdNode(string socketPath) =>
        $"{{\"driver\":\"nbd\",\"node-name\":\"{MigratingGuest.DiskNode}\",\"export\":\"{ExportName}\"," +
        $"\"server\":{{\"type\":\"unix\",\"path\":{JsonSerializer.Serialize(socketPath)}}}}}";

    private static string Qcow2Node(string path) =>
        $"{{\"driver\":\"qcow2\",\"node-name\":\"{MigratingGuest.DiskNode}\"," +
        $"\"file\":{{\"driver\":\"file\",\"filename\":{JsonSerializer.Serialize(path)}}}}}";

    /// <summary>A second writer of the image (qemu-io opening it read-write) is refused by the image lock.</summary>
    private static async Task AssertSecondWriterRefusedAsync(string image, Func<string> context)
    {
        var second = await ToolRunner.RunAsync("qemu-io", "-f", "qcow2", "-c", "read 0 4k", image);
        Assert.True(second.ExitCode != 0 && second.Stderr.Contains("\"write\" lock", StringComparison.Ordinal),
            $"a second writer of {image} was not refused by its lock: exit {second.ExitCode}, {second.Stderr}\n{context()}");
    }

    /// <summary>
    /// migrate to the -incoming destination on 127.0.0.1 and wait (bounded) until the source reports completed, or
    /// pre-switchover with <paramref name="pauseBeforeSwitchover"/> (its guest stopped, its disks still its own).
    /// </summary>
    private static async Task MigrateAsync(QemuQmpProcess source, int port, bool pauseBeforeSwitchover, Func<string> context)
    {
        await source.Qmp.ExecuteAsync("migrate-set-capabilities", new Dictionary<string, object>
        {
            ["capabilities"] = new[]
            {
                new Dictionary<string, object> { ["capability"] = "pause-before-switchover", ["state"] = pauseBeforeSwitchover },
            },
        });
        await source.Qmp.ExecuteAsync("migrate", new Dictionary<string, object> { ["uri"] = $"tcp:127.0.0.1:{port}" });
        await WaitForMigrationStatusAsync(source, pauseBeforeSwitchover ? "pre-switchover" : "completed", context);
    }

    private static async Task WaitForMigrationStatusAsync(QemuQmpProcess source, string wanted, Func<string> context)
    {
        var deadline = DateTime.UtcNow + Bound;
        while (true)
        {
            var status = (string?)(await source.Qmp.ExecuteAsync("query-migrate"))?["status"];
            if (status == wanted)
            {
                return;
            }

            Assert.True(status != "failed" && DateTime.UtcNow < deadline, $"migration {status}, waiting for {wanted}\n{context()}");
            await Task.Delay(100);
        }
    }

    /// <summary>
    /// The files written before the migration are on the destination unchanged, files written during it are there,
    /// and the image (read by qemu-img, e2fsck and debugfs only) holds exactly the guest's final manifest.
    /// </summary>
    private static async Task AssertManifestsAsync(MigratingGuest source, MigratingGuest destination, string image,
        string workDirectory)
    {
        var before = GuestManifest.Parse(source.Serial.Lines(), MigratingGuest.BeforeManifestPrefix);
        var final = GuestManifest.Parse(destination.Serial.Lines());
        Assert.True(before.HashByPath.Count > 0, "the source printed no pre-migration manifest");
        foreach (var (path, hash) in before.HashByPath)
        {
            Assert.True(final.HashByPath.TryGetValue(path, out var after) && after == hash,
                $"{path}: written before the migration as {hash}, the destination's manifest has {after ?? "no such file"}");
        }

        Assert.Contains(final.HashByPath.Keys, p => p.StartsWith("during/", StringComparison.Ordinal));
        Assert.Contains(final.HashByPath.Keys, p => p.StartsWith("after/", StringComparison.Ordinal));
        await GuestImageCheck.AssertHoldsManifestAsync(image, "qcow2", final, workDirectory);
    }

    private void Phase(Stopwatch clock, string what) => output.WriteLine($"{clock.Elapsed.TotalSeconds,6:F1} s: {what}");

    private void Report(Stopwatch clock, MigratingGuest source, MigratingGuest destination)
    {
        // The guest's progress lines carry its uptime: where the time went, in CI logs too.
        output.WriteLine($"test ran {clock.Elapsed.TotalSeconds:F1} s until the guest finished; its steps:");
        foreach (var line in source.Serial.Lines().Concat(destination.Serial.Lines())
                     .Where(l => l.Contains("vmtest[", StringComparison.Ordinal)))
        {
            output.WriteLine(line);
        }
    }
}
