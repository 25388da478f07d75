using System.Diagnostics;
using System.Text.Json;
using NbdQcow.Tests.Interop.Infrastructure;

namespace NbdQcow.Tests.Interop.Migration;

/// <summary>
/// qemu:allocation-depth and qemu:dirty-bitmap:NAME: nbdinfo reads the same maps from nbdqcow as from qemu-nbd (-A,
/// -B NAME) on the same images, and a bitmap a served image keeps up to date is marked in use on disk, so a crash
/// leaves it inconsistent (refused by both servers) rather than silently wrong.
/// </summary>
public sealed class QemuMetaContextTests
{
    private const string Depth = "qemu:allocation-depth";

    [Theory]
    [InlineData("qcow2")]
    [InlineData("raw")]
    public async Task Allocation_depth_map_equals_qemu_nbd_on_a_three_layer_chain(string baseFormat)
    {
        using var folder = new TempDirectory("depth");
        var baseImage = folder.File(baseFormat == "qcow2" ? "base.qcow2" : "base.img");
        if (baseFormat == "qcow2")
        {
            await QemuImage.CreateQcow2Async(baseImage, "48M"); // shorter than the top: past its end nobody has the data
        }
        else
        {
            RawImageFile.CreateSparse(baseImage, 48 << 20);
        }
        await QemuImage.IoAsync(baseImage, baseFormat, "write -P 1 0 4M", "write -P 2 16M 1M");
        var middle = folder.File("mid.qcow2");
        await QemuImage.CreateQcow2Async(middle, "64M", backing: baseImage, backingFormat: baseFormat);
        await QemuImage.IoAsync(middle, "qcow2", "write -P 3 1M 1M", "write -z 20M 1M", "write -P 3 60M 64k");
        var top = folder.File("top.qcow2");
        await QemuImage.CreateQcow2Async(top, "64M", backing: middle, backingFormat: "qcow2");
        await QemuImage.IoAsync(top, "qcow2", "write -P 4 3M 2M", "write -z 16M 64k");

        List<MapEntry> ours;
        await using (var server = await ServerProcess.StartAsync(new ServeOptions { ImagePath = top, UnixSocket = true, ReadOnly = true }))
        {
            ours = await MapAsync(server.Uri(), Depth, server.Describe());
        }
        List<MapEntry> qemus;
        await using (var qemuNbd = await QemuNbdProcess.StartAsync(top, "qcow2", readOnly: true, extraArguments: ["-A"]))
        {
            qemus = await MapAsync($"nbd+unix:///?socket={qemuNbd.SocketPath}", Depth, qemuNbd.Output);
        }
        Assert.Equal(qemus, ours);
        // Every layer shows up, so the comparison cannot pass on an empty or flat map (a raw base holds every byte:
        // nothing is absent, even past its end).
        uint[] layers = baseFormat == "qcow2" ? [0, 1, 2, 3] : [1, 2, 3];
        Assert.Equal(layers, ours.Select(e => e.Type).Distinct().Order().ToArray());
    }

    [Fact]
    public async Task A_copy_of_an_export_through_its_allocation_depth_keeps_the_chain_shape()
    {
        using var folder = new TempDirectory("shape");
        var baseImage = folder.File("base.qcow2");
        await QemuImage.CreateQcow2Async(baseImage, "64M");
        await QemuImage.IoAsync(baseImage, "qcow2", "write -P 1 0 8M");
        var top = folder.File("top.qcow2");
        await QemuImage.CreateQcow2Async(top, "64M", backing: baseImage, backingFormat: "qcow2");
        await QemuImage.IoAsync(top, "qcow2", "write -P 4 3M 2M", "write -z 1M 64k", "write -P 5 40M 64k");
        await using var server = await ServerProcess.StartAsync(new ServeOptions { ImagePath = top, UnixSocket = true, ReadOnly = true, ExportName = "top" });
        var uri = server.Uri("top");

        // The layer's own extents (depth 1), copied by copy-on-read into an overlay of the export, then hung on the base.
        var local = (await MapAsync(uri, Depth, server.Describe())).Where(e => e.Type == 1).Select(e => (e.Offset, e.Length)).ToList();
        Assert.Equal([(1L << 20, 64L << 10), (3L << 20, 2L << 20), (40L << 20, 64L << 10)], local);
        var copy = folder.File("copy.qcow2");
        (await ToolRunner.RunAsync("qemu-img", ["create", "-q", "-f", "qcow2", "-b", uri, "-F", "raw", copy, "64M"])).EnsureSuccess();
        var reads = new List<string> { "-C", "-f", "qcow2" };
        foreach (var (offset, length) in local)
        {
            reads.AddRange(["-c", $"read {offset} {length}"]);
        }
        reads.Add(copy);
        (await ToolRunner.RunAsync("qemu-io", reads)).EnsureSuccess(server.Describe());
        (await ToolRunner.RunAsync("qemu-img", ["rebase", "-u", "-f", "qcow2", "-b", baseImage, "-F", "qcow2", copy])).EnsureSuccess();
        await server.StopAndAssertCleanExitAsync();

        // Same shape (the zero cluster over the base's data included) and the same contents as the original top layer.
        var copied = new List<(long, long)>();
        var map = (await ToolRunner.RunAsync("qemu-img", "map", "--output=json", "-f", "qcow2", copy)).EnsureSuccess();
        foreach (var entry in System.Text.Json.Nodes.JsonNode.Parse(map.Stdout)!.AsArray())
        {
            if ((int)entry!["depth"]! == 0 && (bool)entry["present"]!)
            {
                copied.Add(((long)entry["start"]!, (long)entry["length"]!));
            }
        }
        Assert.Equal(local, copied);
        await QemuImage.AssertIdenticalAsync(top, "qcow2", copy, "qcow2");
    }

    [Fact]
    public async Task Dirty_bitmap_maps_equal_qemu_nbd_after_writes_through_nbdqcow_and_the_bitmap_is_in_use_meanwhile()
    {
        using var folder = new TempDirectory("bitmap");
        var image = folder.File("disk.qcow2");
        await QemuImage.CreateQcow2Async(image, "64M");
        await QemuImage.IoAsync(image, "qcow2", "write -P 1 0 8M");
        (await ToolRunner.RunAsync("qemu-img", "bitmap", "--add", image, "live")).EnsureSuccess();
        (await ToolRunner.RunAsync("qemu-img", "bitmap", "--add", "-g", "128K", image, "frozen")).EnsureSuccess();
        await QemuImage.IoAsync(image, "qcow2", "write -P 2 5M 4k");
        (await ToolRunner.RunAsync("qemu-img", "bitmap", "--disable", image, "frozen")).EnsureSuccess();

        List<MapEntry> live, frozen;
        await using (var server = await ServerProcess.StartAsync(new ServeOptions
        {
            ImagePath = image,
            UnixSocket = true,
            ExtraArguments = ["--bitmap", "live", "--bitmap", "frozen"],
        }))
        {
            var list = (await ToolRunner.RunAsync("nbdinfo", "--list", "--json", server.Uri())).EnsureSuccess(server.Describe());
            Assert.Contains("qemu:dirty-bitmap:live", list.Stdout);
            Assert.Contains("qemu:dirty-bitmap:frozen", list.Stdout);
            (await ToolRunner.RunAsync("qemu-io", "-f", "raw", "-c", "write -P 9 100k 4k", "-c", "write -z 10M 3M",
                "-c", "write -P 7 63M 1M", "-c", "discard 6M 64k", server.Uri())).EnsureSuccess(server.Describe());
            // While served, the enabled bitmap is marked in use on disk: a crash now leaves it visibly inconsistent.
            Assert.Equal(["auto", "in-use"], await BitmapFlagsAsync(image, "live", shared: true));
            Assert.Empty(await BitmapFlagsAsync(image, "frozen", shared: true));
            live = await MapAsync(server.Uri(), "qemu:dirty-bitmap:live", server.Describe());
            frozen = await MapAsync(server.Uri(), "qemu:dirty-bitmap:frozen", server.Describe());
            await server.StopAndAssertCleanExitAsync();
        }
        Assert.Equal(["auto"], await BitmapFlagsAsync(image, "live", shared: false));
        Assert.Contains(live, e => e.Offset == 10 << 20 && e.Length == 3 << 20 && e.Type == 1);

        await using var qemuNbd = await QemuNbdProcess.StartAsync(image, "qcow2", readOnly: true, extraArguments: ["-B", "live", "-B", "frozen"]);
        var uri = $"nbd+unix:///?socket={qemuNbd.SocketPath}";
        Assert.Equal(await MapAsync(uri, "qemu:dirty-bitmap:live", qemuNbd.Output), live);
        Assert.Equal(await MapAsync(uri, "qemu:dirty-bitmap:frozen", qemuNbd.Output), frozen);
    }

    [Fact]
    public async Task A_bitmap_left_in_use_by_a_killed_server_is_refused_with_a_clear_error_and_the_data_is_kept()
    {
        using var folder = new TempDirectory("bitmap-crash");
        var image = folder.File("disk.qcow2");
        await QemuImage.CreateQcow2Async(image, "64M");
        (await ToolRunner.RunAsync("qemu-img", "bitmap", "--add", image, "b0")).EnsureSuccess();
        await using (var server = await ServerProcess.StartAsync(new ServeOptions { ImagePath = image, UnixSocket = true, ExtraArguments = ["--bitmap", "b0"] }))
        {
            (await ToolRunner.RunAsync("qemu-io", "-f", "raw", "-c", "write -P 5 1M 64k", "-c", "flush", server.Uri())).EnsureSuccess(server.Describe());
            using var process = Process.GetProcessById(server.ProcessId);
            process.Kill(); // the nbdqcow process itself (the launcher execs it): no chance to store the bitmap
            await server.StopAsync();
        }
        Assert.Equal(["auto", "in-use"], await BitmapFlagsAsync(image, "b0", shared: false));

        var refused = await ToolRunner.RunAsync(RepositoryRoot.Launcher, ["serve", image, "--socket", folder.File("n.sock"), "--bitmap", "b0"],
            TimeSpan.FromSeconds(60));
        Assert.Equal(1, refused.ExitCode);
        Assert.Contains("bitmap \"b0\" cannot be exported", refused.Stderr);
        Assert.Contains("inconsistent", refused.Stderr);
        var missing = await ToolRunner.RunAsync(RepositoryRoot.Launcher, ["serve", image, "--socket", folder.File("m.sock"), "--bitmap", "nope"],
            TimeSpan.FromSeconds(60));
        Assert.Equal(1, missing.ExitCode);
        Assert.Contains("no such persistent bitmap (have: b0)", missing.Stderr);
        // qemu-nbd refuses it too, and nothing was lost: the write is there.
        var qemuRefused = await ToolRunner.RunAsync("qemu-nbd", ["-r", "-B", "b0", "--socket", folder.File("q.sock"), "-f", "qcow2", image], TimeSpan.FromSeconds(30));
        Assert.NotEqual(0, qemuRefused.ExitCode);
        (await ToolRunner.RunAsync("qemu-io", "-r", "-f", "qcow2", "-c", "read -P 5 1M 64k", image)).EnsureSuccess();
    }

    [Fact]
    public async Task One_block_status_answers_base_allocation_depth_and_dirty_bitmap_together_and_REQ_ONE_gives_one_extent_each()
    {
        using var folder = new TempDirectory("contexts");
        var image = folder.File("disk.qcow2");
        await QemuImage.CreateQcow2Async(image, "64M");
        await QemuImage.IoAsync(image, "qcow2", "write -P 1 0 1M");
        (await ToolRunner.RunAsync("qemu-img", "bitmap", "--add", image, "b0")).EnsureSuccess();
        await using var server = await ServerProcess.StartAsync(new ServeOptions { ImagePath = image, UnixSocket = true, ExtraArguments = ["--bitmap", "b0"] });

        var result = (await ToolRunner.RunPythonScriptAsync("qemu_meta_contexts.py", [server.Uri(), "b0"])).EnsureSuccess(server.Describe());
        using var json = JsonDocument.Parse(result.Stdout);
        long[] Answer(string request, string context) =>
            json.RootElement.GetProperty(request).GetProperty(context).EnumerateArray().Select(e => e.GetInt64()).ToArray();
        const long Mib = 1 << 20;
        // 0-1M written before the bitmap, 2M+64k written through nbdqcow; the rest never written.
        Assert.Equal([Mib, 0, Mib, 3, 64 << 10, 0, 2 * Mib - (64 << 10), 3], Answer("full", "base:allocation"));
        Assert.Equal([Mib, 1, Mib, 0, 64 << 10, 1, 2 * Mib - (64 << 10), 0], Answer("full", Depth));
        Assert.Equal([2 * Mib, 0, 64 << 10, 1, 2 * Mib - (64 << 10), 0], Answer("full", "qemu:dirty-bitmap:b0"));
        Assert.Equal([Mib, 0], Answer("one", "base:allocation"));
        Assert.Equal([Mib, 1], Answer("one", Depth));
        Assert.Equal([2 * Mib, 0], Answer("one", "qemu:dirty-bitmap:b0"));
        await server.StopAndAssertCleanExitAsync();
    }

    internal readonly record struct MapEntry(long Offset, long Length, uint Type);

    /// <summary>`nbdinfo --map=CONTEXT --json`: the extents of one meta context over the whole export.</summary>
    internal static async Task<List<MapEntry>> MapAsync(string uri, string context, string describe)
    {
        var result = (await ToolRunner.RunAsync("nbdinfo", $"--map={context}", "--json", uri)).EnsureSuccess(describe);
        using var json = JsonDocument.Parse(result.Stdout);
        var entries = new List<MapEntry>();
        foreach (var element in json.RootElement.EnumerateArray())
        {
            entries.Add(new MapEntry(element.GetProperty("offset").GetInt64(), element.GetProperty("length").GetInt64(),
                element.GetProperty("type").GetUInt32()));
        }
        Assert.NotEmpty(entries);
        return entries;
    }

    /// <summary>The flags qemu-img info reports for one persistent bitmap (-U while a server holds the image).</summary>
    internal static async Task<List<string>> BitmapFlagsAsync(string image, string bitmap, bool shared)
    {
        var arguments = new List<string> { "info", "--output=json", "-f", "qcow2" };
        if (shared)
        {
            arguments.Add("-U");
        }
        arguments.Add(image);
        var result = (await ToolRunner.RunAsync("qemu-img", arguments)).EnsureSuccess();
        using var json = JsonDocument.Parse(result.Stdout);
        foreach (var entry in json.RootElement.GetProperty("format-specific").GetProperty("data").GetProperty("bitmaps").EnumerateArray())
        {
            if (entry.GetProperty("name").GetString() == bitmap)
            {
                return entry.GetProperty("flags").EnumerateArray().Select(f => f.GetString()!).Order().ToList();
            }
        }
        Assert.Fail($"qemu-img info shows no bitmap {bitmap}:\n{result.Stdout}");
        return [];
    }
}
