using System.Globalization;
using System.Security.Cryptography;
using System.Text.Json;
using System.Xml.Linq;
using NbdQcow.Tests.Interop.Infrastructure;

namespace NbdQcow.Tests.Interop.Bench;

/// <summary>`nbdqcow bench` end to end: real `nbdqcow serve` children driven by the bench's own NBD load generator.</summary>
public sealed class BenchCommandTests
{
    private static readonly TimeSpan BenchTimeout = TimeSpan.FromMinutes(5);

    [Fact]
    public async Task Bench_on_a_new_image_measures_every_mode_and_workload_and_writes_csv_json_and_an_svg_chart()
    {
        using var dir = new TempDirectory("bench");
        var csv = dir.File("bench.csv");
        var json = dir.File("bench.json");
        var svg = dir.File("bench.svg");

        var result = await ToolRunner.RunAsync(RepositoryRoot.Launcher,
            ["bench", "--dir", dir.Path, "--modes", "writeback,writethrough",
             "--workload", "randread-4k-qd16,randrw-4k-qd16-flush32", "--seconds", "1", "--size", "32M",
             "--csv", csv, "--json", json, "--chart", svg], BenchTimeout);
        result.EnsureSuccess();

        // The guarantees printed come from the durability contract: writethrough keeps every acknowledged write.
        Assert.Contains("--cache writethrough", result.Stdout);
        Assert.Contains("every acknowledged write survives", result.Stdout);
        Assert.Contains("writes acknowledged before a completed FLUSH", result.Stdout);

        var rows = File.ReadAllLines(csv);
        Assert.StartsWith("mode,workload,iops,", rows[0]);
        var header = rows[0].Split(',');
        var measured = rows.Skip(1).Select(line => line.Split(',')).ToList();
        Assert.Equal(4, measured.Count);
        foreach (var mode in new[] { "writeback", "writethrough" })
        {
            var read = Row(measured, mode, "randread-4k-qd16");
            Assert.True(Number(header, read, "iops") > 0, $"{mode}: no reads completed");
            Assert.Equal(0, Number(header, read, "writes"));
            Assert.True(Number(header, read, "p99_us") >= Number(header, read, "p50_us"));

            var mix = Row(measured, mode, "randrw-4k-qd16-flush32");
            var writes = Number(header, mix, "writes");
            var reads = Number(header, mix, "reads");
            Assert.True(writes > 0 && reads > writes, $"{mode}: a 70/30 mix needs more reads ({reads}) than writes ({writes})");
            // One FLUSH per 32 writes on the (single) connection.
            Assert.Equal(Math.Floor(writes / 32), Number(header, mix, "flushes"));
            Assert.True(Number(header, mix, "server_cpu_s_per_gib") > 0);
            Assert.True(Number(header, mix, "peak_rss_mib") > 1);
        }

        AssertJsonMatchesCsv(json, measured, header);
        AssertValidSvg(svg);
        // Nothing is left behind but what was asked for: the work folder with the images is gone.
        Assert.Equal(new[] { "bench.csv", "bench.json", "bench.svg" }, Directory.GetFileSystemEntries(dir.Path).Select(p => Path.GetFileName(p)).Order().ToArray());
    }

    [Fact]
    public async Task Bench_with_image_writes_only_to_a_copy_and_leaves_the_original_unchanged()
    {
        using var dir = new TempDirectory("bench-image");
        var raw = dir.File("source.raw");
        var content = new byte[8 << 20];
        new Random(3).NextBytes(content);
        await File.WriteAllBytesAsync(raw, content);
        var image = dir.File("user.qcow2");
        (await ToolRunner.RunAsync("qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, image)).EnsureSuccess();
        File.Delete(raw);
        var before = SHA256.HashData(await File.ReadAllBytesAsync(image));

        var result = await ToolRunner.RunAsync(RepositoryRoot.Launcher,
            ["bench", "--image", image, "--modes", "writeback", "--workload", "randwrite-4k-qd16", "--seconds", "1"], BenchTimeout);
        result.EnsureSuccess();
        Assert.Contains("randwrite-4k-qd16", result.Stdout);

        Assert.Equal(before, SHA256.HashData(await File.ReadAllBytesAsync(image)));
        Assert.Equal(new[] { "user.qcow2" }, Directory.GetFileSystemEntries(dir.Path).Select(p => Path.GetFileName(p)).ToArray());
    }

    [Fact]
    public async Task Bench_refuses_unknown_modes_and_a_missing_target_with_exit_code_2()
    {
        var noTarget = await ToolRunner.RunAsync(RepositoryRoot.Launcher, ["bench", "--seconds", "1"], BenchTimeout);
        Assert.Equal(2, noTarget.ExitCode);
        Assert.Contains("--image PATH or --dir DIR", noTarget.Stderr);

        using var dir = new TempDirectory("bench-bad");
        var badMode = await ToolRunner.RunAsync(RepositoryRoot.Launcher, ["bench", "--dir", dir.Path, "--modes", "writeback,fast"], BenchTimeout);
        Assert.Equal(2, badMode.ExitCode);
        Assert.Contains("unknown cache mode 'fast'", badMode.Stderr);

        // The chart is SVG: a .png name is refused before anything is measured or created.
        var pngChart = await ToolRunner.RunAsync(RepositoryRoot.Launcher, ["bench", "--dir", dir.Path, "--chart", dir.File("bench.png")], BenchTimeout);
        Assert.Equal(2, pngChart.ExitCode);
        Assert.Contains("name it with .svg (e.g. bench.svg)", pngChart.Stderr);
        Assert.Empty(Directory.GetFileSystemEntries(dir.Path));
    }

    [Fact]
    public async Task Bench_started_without_the_launcher_and_with_a_wrong_server_path_says_how_to_run_it_with_exit_code_2()
    {
        // The launcher builds the bench beside the server's build; started on its own it must say what is missing.
        (await ToolRunner.RunAsync(RepositoryRoot.Launcher, ["bench", "--help"], BenchTimeout)).EnsureSuccess();
        var bench = Path.Combine(RepositoryRoot.Path, ".cache", "nbdqcow-bench", "nbdqcow-bench");
        using var dir = new TempDirectory("bench-no-server");
        var missing = dir.File("no-such-nbdqcow");

        var result = await ToolRunner.RunAsync(bench, ["--dir", dir.Path, "--seconds", "1"], BenchTimeout,
            environment: new Dictionary<string, string> { ["NBDQCOW_BENCH_SERVER"] = missing });

        Assert.Equal(2, result.ExitCode);
        Assert.Contains($"NBDQCOW_BENCH_SERVER={missing}: no such file", result.Stderr);
        Assert.Contains("./nbdqcow bench", result.Stderr);
        Assert.Empty(Directory.GetFileSystemEntries(dir.Path));
    }

    private static string[] Row(List<string[]> rows, string mode, string workload)
        => rows.Single(r => r[0] == mode && r[1] == workload);

    private static double Number(string[] header, string[] row, string column)
        => double.Parse(row[Array.IndexOf(header, column)], CultureInfo.InvariantCulture);

    /// <summary>A well-formed SVG document of a sensible size with a white background, one coloured bar per mode and
    /// workload (at least two colours), and the workload and mode names written as text.</summary>
    private static void AssertValidSvg(string path)
    {
        XNamespace svg = "http://www.w3.org/2000/svg";
        var root = XDocument.Load(path).Root!;
        Assert.Equal(svg + "svg", root.Name);
        var width = double.Parse(root.Attribute("width")!.Value, CultureInfo.InvariantCulture);
        var height = double.Parse(root.Attribute("height")!.Value, CultureInfo.InvariantCulture);
        Assert.True(width > 100 && height > 100, $"chart is {width}x{height}");

        var rects = root.Elements(svg + "rect").ToList();
        Assert.Equal("#ffffff", rects[0].Attribute("fill")!.Value);
        var bars = rects.Skip(1).ToList();
        Assert.Equal(4, bars.Count);
        Assert.True(bars.Select(b => b.Attribute("fill")!.Value).Distinct().Count() >= 2, "the chart has no coloured bars");
        Assert.All(bars, b => Assert.True(double.Parse(b.Attribute("width")!.Value, CultureInfo.InvariantCulture) >= 1));

        var texts = root.Elements(svg + "text").Select(t => t.Value).ToList();
        Assert.Contains(texts, t => t.StartsWith("randread-4k-qd16", StringComparison.Ordinal));
        Assert.Contains(texts, t => t.StartsWith("randrw-4k-qd16-flush32", StringComparison.Ordinal));
        Assert.Contains("writethrough", texts);
        Assert.Contains(texts, t => t.Contains("IOPS", StringComparison.Ordinal));
    }

    /// <summary>The JSON holds the same rows as the CSV, and each mode's guarantees.</summary>
    private static void AssertJsonMatchesCsv(string path, List<string[]> csvRows, string[] header)
    {
        using var json = JsonDocument.Parse(File.ReadAllText(path));
        var modes = json.RootElement.GetProperty("modes").EnumerateArray().ToList();
        Assert.Equal(new[] { "writeback", "writethrough" }, modes.Select(m => m.GetProperty("mode").GetString()).ToArray());
        Assert.Contains("every acknowledged write survives", modes[1].GetProperty("after_power_loss").GetString());
        var results = json.RootElement.GetProperty("results").EnumerateArray().ToList();
        Assert.Equal(csvRows.Count, results.Count);
        foreach (var result in results)
        {
            var row = Row(csvRows, result.GetProperty("mode").GetString()!, result.GetProperty("workload").GetString()!);
            foreach (var column in new[] { "reads", "writes", "flushes", "bytes" })
            {
                Assert.Equal(Number(header, row, column), result.GetProperty(column).GetDouble());
            }
            Assert.Equal(Number(header, row, "iops"), result.GetProperty("iops").GetDouble(), 0.1);
        }
    }
}
