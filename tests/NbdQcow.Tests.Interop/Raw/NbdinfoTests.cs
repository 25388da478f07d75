using System.Text.Json;
using NbdQcow.Tests.Interop.Infrastructure;

namespace NbdQcow.Tests.Interop.Raw;

/// <summary>What nbdinfo (libnbd-bin) sees of a served raw image.</summary>
public sealed class NbdinfoTests
{
    private static readonly string[] Capabilities =
        ["can_flush", "can_fua", "can_trim", "can_zero", "can_fast_zero", "can_cache", "can_multi_conn"];

    [Fact]
    public async Task ListShowsTheNamedExportWithSizeCapabilitiesAndBaseAllocation()
    {
        await using var image = await ServedImage.StartRawAsync(64L << 20);
        var result = (await ToolRunner.RunAsync("nbdinfo", ["--list", "--json", image.Uri()]))
            .EnsureSuccess(image.Server.Describe());
        using var json = JsonDocument.Parse(result.Stdout);
        Assert.Equal("newstyle-fixed", json.RootElement.GetProperty("protocol").GetString());
        var exports = json.RootElement.GetProperty("exports").EnumerateArray().ToList();
        var names = exports.Select(e => e.GetProperty("export-name").GetString()).ToList();
        // The default export name is the file name without extension.
        Assert.Contains("disk", names);
        foreach (var export in exports)
        {
            AssertWritableExportWithAllCapabilities(export, 64L << 20, result.Stdout);
        }

        await image.Server.StopAndAssertCleanExitAsync();
    }

    [Fact]
    public async Task EachExportByNameAndTheDefaultExportShowSizeAndCapabilities()
    {
        await using var image = await ServedImage.StartRawAsync(48L << 20);
        foreach (var name in new[] { "", "disk" })
        {
            var result = (await ToolRunner.RunAsync("nbdinfo", ["--json", image.Uri(name)]))
                .EnsureSuccess(image.Server.Describe());
            using var json = JsonDocument.Parse(result.Stdout);
            var export = Assert.Single(json.RootElement.GetProperty("exports").EnumerateArray().ToList());
            AssertWritableExportWithAllCapabilities(export, 48L << 20, result.Stdout);
            Assert.True(json.RootElement.GetProperty("structured").GetBoolean(), "structured replies not negotiated");
        }

        await image.Server.StopAndAssertCleanExitAsync();
    }

    [Fact]
    public async Task UnknownExportNameIsRefusedAndTheServerKeepsServing()
    {
        await using var image = await ServedImage.StartRawAsync(16L << 20);
        var refused = (await ToolRunner.RunAsync("nbdinfo", ["--json", image.Uri("no-such-export")]))
            .EnsureFailure(image.Server.Describe());
        Assert.Contains("export", refused.Stderr, StringComparison.OrdinalIgnoreCase);
        (await ToolRunner.RunAsync("nbdinfo", ["--size", image.Uri("disk")])).EnsureSuccess(image.Server.Describe());
        await image.Server.StopAndAssertCleanExitAsync();
    }

    [Fact]
    public async Task MapReportsWrittenRangesAsDataAndTheRestAsHoles()
    {
        const int mib = 1 << 20;
        await using var image = await ServedImage.StartRawAsync(32L * mib, prepare: path =>
        {
            RawImageFile.Write(path, 2 * mib, TestPattern.Bytes(2, 3 * mib));
            RawImageFile.Write(path, 20 * mib, TestPattern.Bytes(3, mib));
        });
        var result = (await ToolRunner.RunAsync("nbdinfo", ["--map", "--json", image.Uri()]))
            .EnsureSuccess(image.Server.Describe());
        using var json = JsonDocument.Parse(result.Stdout);
        var extents = json.RootElement.EnumerateArray().Select(e =>
        {
            var type = e.GetProperty("type").GetInt32();
            return new MapExtent(e.GetProperty("offset").GetInt64(), e.GetProperty("length").GetInt64(),
                Data: (type & 1) == 0, Zero: (type & 2) != 0);
        }).ToList();
        Assert.Equal(32L * mib, extents.Sum(e => e.Length));
        var runs = QemuImgMap.DataRuns(extents);
        Assert.True(runs.SequenceEqual([(2L * mib, 5L * mib), (20L * mib, 21L * mib)]),
            $"data runs {QemuImgMap.Format(runs)}\n{result.Stdout}");
        await image.Server.StopAndAssertCleanExitAsync();
    }

    private static void AssertWritableExportWithAllCapabilities(JsonElement export, long size, string json)
    {
        Assert.Equal(size, export.GetProperty("export-size").GetInt64());
        Assert.False(export.GetProperty("is_read_only").GetBoolean(), json);
        foreach (var capability in Capabilities)
        {
            Assert.True(export.TryGetProperty(capability, out var value) && value.GetBoolean(),
                $"{capability} missing or false in\n{json}");
        }

        var contexts = export.GetProperty("contexts").EnumerateArray().Select(c => c.GetString()).ToList();
        Assert.Contains("base:allocation", contexts);
    }
}
