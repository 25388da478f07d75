using System.Text.Json.Nodes;
using NbdQcow.Tests.Interop.Infrastructure;

namespace NbdQcow.Tests.Interop.Migration;

/// <summary>
/// Incremental backup pull from a running export, with qemu's tools only: qemu-img map through x-dirty-bitmap lists
/// the dirty ranges, qemu-io copies exactly those (copy-on-read into an overlay whose backing is the export), and the
/// overlay rebased onto the full backup equals the live image while holding nothing but the changed clusters.
/// </summary>
public sealed class QemuBackupPullTests
{
    private const long Kib = 1 << 10;
    private const long Mib = 1 << 20;

    [Fact]
    public async Task Incremental_pull_through_the_dirty_bitmap_copies_exactly_the_changes_since_the_bitmap_was_created()
    {
        using var folder = new TempDirectory("backup");
        var image = folder.File("disk.qcow2");
        await QemuImage.CreateQcow2Async(image, "64M");
        await QemuImage.IoAsync(image, "qcow2", "write -P 1 0 8M", "write -P 2 30M 2M");
        // The bitmap and the full backup are taken at the same point (nothing writes in between).
        (await ToolRunner.RunAsync("qemu-img", "bitmap", "--add", image, "since-full")).EnsureSuccess();
        var full = folder.File("full.qcow2");
        (await ToolRunner.RunAsync("qemu-img", "convert", "-f", "qcow2", "-O", "qcow2", image, full)).EnsureSuccess();

        await using var server = await ServerProcess.StartAsync(new ServeOptions
        {
            ImagePath = image,
            UnixSocket = true,
            ExportName = "disk",
            ExtraArguments = ["--bitmap", "since-full"],
        });
        var uri = server.Uri("disk");
        (await ToolRunner.RunAsync("qemu-io", "-f", "raw", "-c", "write -P 5 1M 100k", "-c", "write -z 20M 1M",
            "-c", "write -P 6 31M 64k", "-c", "write -P 7 63M 4k", uri)).EnsureSuccess(server.Describe());
        // The changes, at the bitmap's 64 KiB granularity.
        (long, long)[] changed = [(1 * Mib, 128 * Kib), (20 * Mib, 1 * Mib), (31 * Mib, 64 * Kib), (63 * Mib, 64 * Kib)];

        var dirty = await DirtyRangesAsync(server.SocketPath!, "disk", "since-full", server.Describe());
        Assert.Equal(changed, dirty);

        var incremental = folder.File("inc.qcow2");
        (await ToolRunner.RunAsync("qemu-img", ["create", "-q", "-f", "qcow2", "-b", uri, "-F", "raw", incremental, "64M"])).EnsureSuccess();
        var reads = new List<string> { "-C", "-f", "qcow2" };
        foreach (var (offset, length) in dirty)
        {
            reads.AddRange(["-c", $"read {offset} {length}"]);
        }
        reads.Add(incremental);
        (await ToolRunner.RunAsync("qemu-io", reads)).EnsureSuccess(server.Describe());
        (await ToolRunner.RunAsync("qemu-img", ["rebase", "-u", "-f", "qcow2", "-b", full, "-F", "qcow2", incremental])).EnsureSuccess();

        // Only the dirty clusters were copied, and full + incremental is the image as it is now (still served).
        var local = new List<(long, long)>();
        var map = (await ToolRunner.RunAsync("qemu-img", "map", "--output=json", "-f", "qcow2", incremental)).EnsureSuccess();
        foreach (var entry in JsonNode.Parse(map.Stdout)!.AsArray())
        {
            if ((int)entry!["depth"]! == 0 && (bool)entry["present"]!)
            {
                local.Add(((long)entry["start"]!, (long)entry["length"]!));
            }
        }
        Assert.Equal(changed, local);
        var compare = await ToolRunner.RunAsync("qemu-img", "compare", "-f", "qcow2", "-F", "raw", incremental, uri);
        compare.EnsureSuccess(server.Describe());
        Assert.Contains("Images are identical", compare.Stdout);

        await server.StopAndAssertCleanExitAsync();
        Assert.Equal(["auto"], await QemuMetaContextTests.BitmapFlagsAsync(image, "since-full", shared: false));
        await QemuImage.AssertCheckCleanAsync(image);
    }

    /// <summary>qemu-img map through the NBD client's x-dirty-bitmap: dirty ranges read as "data": false.</summary>
    internal static async Task<List<(long Offset, long Length)>> DirtyRangesAsync(string socket, string export, string bitmap, string describe)
    {
        var result = (await ToolRunner.RunAsync("qemu-img", "map", "--output=json", "--image-opts",
            $"driver=nbd,server.type=unix,server.path={socket},export={export},x-dirty-bitmap=qemu:dirty-bitmap:{bitmap}")).EnsureSuccess(describe);
        var ranges = new List<(long, long)>();
        foreach (var entry in JsonNode.Parse(result.Stdout)!.AsArray())
        {
            if (!(bool)entry!["data"]!)
            {
                ranges.Add(((long)entry["start"]!, (long)entry["length"]!));
            }
        }
        return ranges;
    }
}
