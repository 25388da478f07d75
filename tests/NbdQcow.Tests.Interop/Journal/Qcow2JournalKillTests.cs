using System.Diagnostics;
using NbdQcow.Tests.Interop.Infrastructure;

namespace NbdQcow.Tests.Interop.Journal;

/// <summary>
/// A real `nbdqcow serve --journal` written by qemu-io with flushes, then killed with SIGKILL: qemu-img refuses the
/// image (the "nbdqcow journal" incompatible bit) rather than read stale tables; `nbdqcow check` reads it with the
/// journal applied in memory and writes nothing; `nbdqcow recover` gets every flushed write back through the journal;
/// reopening read-write (`check --repair`) replays the journal; then
/// `qemu-img check` is clean and `qemu-img compare` finds it identical to a reference written the same way.
/// </summary>
public sealed class Qcow2JournalKillTests
{
    private static readonly string[] Commands =
    [
        "write -P 0x11 0 1M",
        "write -P 0x22 5M 192k",
        "flush",
        "write -P 0x33 512k 64k",
        "write -z 5M 64k",
        "write -P 0x44 33M 4k",
        "discard 0 64k",
        "flush",
    ];

    [Fact]
    public async Task Killed_journalled_server_leaves_an_image_qemu_refuses_until_nbdqcow_replays_it_then_clean_and_identical()
    {
        using var folder = new TempDirectory("journal-kill");
        var image = folder.File("disk.qcow2");
        await QemuImage.CreateQcow2Async(image, "64M");
        var reference = folder.File("reference.raw");
        RawImageFile.CreateSparse(reference, 64 << 20);
        await QemuImage.IoAsync(reference, "raw", Commands);

        await using (var server = await ServerProcess.StartAsync(new ServeOptions
        {
            ImagePath = image,
            UnixSocket = true,
            // No background flush: what is on disk at the kill is exactly what the client's flushes made durable.
            ExtraArguments = ["--journal", "--max-dirty-age", "off"],
        }))
        {
            var arguments = new List<string> { "-f", "raw" };
            foreach (var command in Commands) arguments.AddRange(["-c", command]);
            arguments.Add(server.Uri());
            var io = (await ToolRunner.RunAsync("qemu-io", arguments)).EnsureSuccess(server.Output);
            Assert.DoesNotContain("failed", io.Stdout + io.Stderr, StringComparison.OrdinalIgnoreCase);
            using (var process = Process.GetProcessById(server.ProcessId)) process.Kill(); // SIGKILL: no checkpoint, no close
            Assert.True(SpinWait.SpinUntil(() => server.HasExited, TimeSpan.FromSeconds(10)), "server did not die");
        }

        Assert.True(File.Exists(image + ".journal"), "journal file next to the image");
        var info = (await ToolRunner.RunAsync("qemu-img", ["info", "-f", "qcow2", image])).EnsureFailure();
        Assert.Contains("nbdqcow journal", info.Stderr);

        var imageBefore = QemuImage.Sha256(image);
        var check = await ToolRunner.RunAsync(RepositoryRoot.Launcher, ["check", image]);
        Assert.True(check.ExitCode == 0, check.Stdout + check.Stderr);
        Assert.Contains("pending nbdqcow journal", check.Stdout);
        Assert.Equal(imageBefore, QemuImage.Sha256(image)); // a check without repair writes nothing
        (await ToolRunner.RunAsync("qemu-img", ["info", "-f", "qcow2", image])).EnsureFailure();

        // recover reads the journal too: its committed tables (not yet in place) give back every flushed write.
        var recovered = folder.File("recovered.qcow2");
        var recover = await ToolRunner.RunAsync(RepositoryRoot.Launcher, ["recover", image, "--output", recovered]);
        Assert.True(recover.ExitCode == 0, recover.Stdout + recover.Stderr);
        Assert.Contains(".journal", recover.Stdout);
        await QemuImage.AssertIdenticalAsync(recovered, "qcow2", reference, "raw");
        var withoutJournal = folder.File("without-journal.qcow2");
        var blind = await ToolRunner.RunAsync(RepositoryRoot.Launcher, ["recover", image, "--output", withoutJournal, "--ignore-journal"]);
        var differs = await ToolRunner.RunAsync("qemu-img", ["compare", "-f", "qcow2", "-F", "raw", withoutJournal, reference]);
        Assert.True(differs.ExitCode != 0, "without the journal the tables in place are stale: " + blind.Stdout);
        Assert.Equal(imageBefore, QemuImage.Sha256(image)); // recover never writes its input

        var repair = await ToolRunner.RunAsync(RepositoryRoot.Launcher, ["check", "--repair", "leaks", image]);
        Assert.True(repair.ExitCode == 0, repair.Stdout + repair.Stderr);
        Assert.Contains("journal was replayed", repair.Stdout);

        await QemuImage.AssertCheckCleanAsync(image, "after replay");
        await QemuImage.AssertIdenticalAsync(image, "qcow2", reference, "raw");
    }

    [Fact]
    public async Task Journal_is_refused_for_a_raw_image_with_a_clear_message()
    {
        using var folder = new TempDirectory("journal-raw");
        var image = folder.File("disk.raw");
        RawImageFile.CreateSparse(image, 1 << 20);
        var result = await ToolRunner.RunAsync(RepositoryRoot.Launcher, ["serve", image, "--journal", "--socket", folder.File("s")],
            TimeSpan.FromSeconds(60));
        Assert.NotEqual(0, result.ExitCode);
        Assert.Contains("--journal is for qcow2 images only", result.Stderr);
    }
}
