using System.Text.Json;
using System.Text.Json.Nodes;
using NbdQcow.Tests.Interop.Infrastructure;

namespace NbdQcow.Tests.Interop.Migration;

/// <summary>
/// qemu mirrors a qcow2 it owns onto an nbdqcow export (the storage half of a migration without shared storage):
/// qemu-storage-daemon runs blockdev-mirror over a backing chain while a client keeps writing to the source, the
/// job is completed, and the target image then equals the source (qemu-img compare) and is clean (qemu-img check).
/// </summary>
public sealed class QemuMirrorTests
{
    private static readonly TimeSpan JobTimeout = TimeSpan.FromSeconds(90);

    [Theory]
    [InlineData("full")]
    [InlineData("top")]
    public async Task Blockdev_mirror_onto_an_nbdqcow_export_with_writes_meanwhile_leaves_an_identical_clean_image(string sync)
    {
        using var folder = new TempDirectory("mirror");
        var baseImage = folder.File("base.qcow2");
        await QemuImage.CreateQcow2Async(baseImage, "64M");
        await QemuImage.IoAsync(baseImage, "qcow2", "write -P 1 0 8M", "write -P 2 32M 1M");
        var source = folder.File("src.qcow2");
        await QemuImage.CreateQcow2Async(source, "64M", backing: baseImage, backingFormat: "qcow2");
        await QemuImage.IoAsync(source, "qcow2", "write -P 3 4M 2M", "write -P 4 40M 64k", "write -z 32M 64k");
        // sync=top copies only the top layer: the target sits on the same base, as libvirt prepares it.
        var target = folder.File("tgt.qcow2");
        if (sync == "top")
        {
            await QemuImage.CreateQcow2Async(target, "64M", backing: baseImage, backingFormat: "qcow2");
        }
        else
        {
            await QemuImage.CreateQcow2Async(target, "64M");
        }

        await using var server = await ServerProcess.StartAsync(new ServeOptions { ImagePath = target, UnixSocket = true, ExportName = "tgt" });
        var sourceSocket = folder.File("qsd-nbd.sock");
        await using var daemon = await QemuQmpProcess.StartStorageDaemonAsync(
        [
            "--blockdev", $"{{\"driver\":\"qcow2\",\"node-name\":\"src\",\"file\":{{\"driver\":\"file\",\"filename\":{JsonSerializer.Serialize(source)}}}}}",
            "--nbd-server", $"addr.type=unix,addr.path={sourceSocket}",
            "--export", "type=nbd,id=srcexp,node-name=src,name=src,writable=on",
        ], folder.Path);
        var qmp = daemon.Qmp;
        string Context() => daemon.Describe() + "\n" + server.Describe();
        var sourceUri = $"nbd+unix:///src?socket={sourceSocket}";

        await qmp.ExecuteAsync("blockdev-add", new Dictionary<string, object>
        {
            ["driver"] = "nbd",
            ["node-name"] = "target",
            ["export"] = "tgt",
            ["server"] = new Dictionary<string, object> { ["type"] = "unix", ["path"] = server.SocketPath! },
        });
        // Throttled at first so the guest-like writes below land while the bulk copy is still running.
        await qmp.ExecuteAsync("blockdev-mirror", new Dictionary<string, object>
        {
            ["job-id"] = "m0",
            ["device"] = "src",
            ["target"] = "target",
            ["sync"] = sync,
            ["speed"] = 4 << 20,
        });
        (await Io(sourceUri, "write -P 5 1M 1M", "write -P 6 50M 3M", "write -z 4M 64k")).EnsureSuccess(Context());
        await qmp.ExecuteAsync("block-job-set-speed", new Dictionary<string, object> { ["device"] = "m0", ["speed"] = 0 });
        await qmp.WaitForEventAsync("BLOCK_JOB_READY", e => (string?)e["data"]?["device"] == "m0", JobTimeout);
        (await Io(sourceUri, "write -P 7 60M 64k", "write -P 8 2M 4k")).EnsureSuccess(Context());
        await qmp.ExecuteAsync("job-complete", new Dictionary<string, object> { ["id"] = "m0" });
        var completed = await qmp.WaitForEventAsync("BLOCK_JOB_COMPLETED", e => (string?)e["data"]?["device"] == "m0", JobTimeout);
        Assert.True(completed["data"]?["error"] is null, $"mirror failed: {completed.ToJsonString()}\n{Context()}");
        await daemon.QuitAsync();
        await server.StopAndAssertCleanExitAsync();

        await QemuImage.AssertIdenticalAsync(source, "qcow2", target, "qcow2", Context());
        await QemuImage.AssertCheckCleanAsync(target, Context());
        // sync=top left the base's data in the base: the first MiB (never written above the base) is not in the target.
        var map = (await ToolRunner.RunAsync("qemu-img", "map", "--output=json", "-f", "qcow2", target)).EnsureSuccess();
        var first = JsonNode.Parse(map.Stdout)!.AsArray()[0]!;
        Assert.Equal(0, (long)first["start"]!);
        Assert.Equal(sync == "top" ? 1 : 0, (int)first["depth"]!);
    }

    private static Task<ToolResult> Io(string uri, params string[] commands)
    {
        var arguments = new List<string> { "-f", "raw" };
        foreach (var command in commands)
        {
            arguments.AddRange(["-c", command]);
        }
        arguments.Add(uri);
        return ToolRunner.RunAsync("qemu-io", arguments);
    }
}
