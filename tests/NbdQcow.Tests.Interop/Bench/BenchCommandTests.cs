using System.Buffers.Binary;
using System.Globalization;
using System.IO.Compression;
using System.Security.Cryptography;
using NbdQcow.Tests.Interop.Infrastructure;

namespace NbdQcow.Tests.Interop.Bench;

/// <summary>`nbdqcow bench` end to end: real `nbdqcow serve` children driven by the bench's own NBD load generator.</summary>
public sealed class BenchCommandTests
{
    private static readonly TimeSpan BenchTimeout = TimeSpan.FromMinutes(5);

    [Fact]
    public async Task Bench_on_a_new_image_measures_every_mode_and_workload_and_writes_csv_and_a_valid_png()
    {
        using var dir = new TempDirectory("bench");
        var csv = dir.File("bench.csv");
        var png = dir.File("bench.png");

        var result = await ToolRunner.RunAsync(RepositoryRoot.Launcher,
            ["bench", "--dir", dir.Path, "--modes", "writeback,writethrough",
             "--workload", "randread-4k-qd16,randrw-4k-qd16-flush32", "--seconds", "1", "--size", "32M",
             "--csv", csv, "--chart", png], BenchTimeout);
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

        AssertValidPng(png);
        // Nothing is left behind but what was asked for: the work folder with the images is gone.
        Assert.Equal(new[] { "bench.csv", "bench.png" }, Directory.GetFileSystemEntries(dir.Path).Select(p => Path.GetFileName(p)).Order().ToArray());
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
    }

    private static string[] Row(List<string[]> rows, string mode, string workload)
        => rows.Single(r => r[0] == mode && r[1] == workload);

    private static double Number(string[] header, string[] row, string column)
        => double.Parse(row[Array.IndexOf(header, column)], CultureInfo.InvariantCulture);

    /// <summary>PNG signature, IHDR first and IEND last, and the IDAT stream inflates to exactly one filtered RGB row per line,
    /// with both white background and coloured bar pixels in it.</summary>
    private static void AssertValidPng(string path)
    {
        var bytes = File.ReadAllBytes(path);
        Assert.Equal(new byte[] { 0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a }, bytes[..8]);
        var position = 8;
        var chunks = new List<string>();
        int width = 0, height = 0;
        using var idat = new MemoryStream();
        while (position < bytes.Length)
        {
            var length = BinaryPrimitives.ReadInt32BigEndian(bytes.AsSpan(position));
            var type = System.Text.Encoding.ASCII.GetString(bytes, position + 4, 4);
            var data = bytes.AsSpan(position + 8, length);
            if (type == "IHDR")
            {
                width = BinaryPrimitives.ReadInt32BigEndian(data);
                height = BinaryPrimitives.ReadInt32BigEndian(data[4..]);
                Assert.Equal(8, data[8]);
                Assert.Equal(2, data[9]);
            }
            else if (type == "IDAT")
            {
                idat.Write(data);
            }
            chunks.Add(type);
            position += 12 + length;
        }
        Assert.Equal(bytes.Length, position);
        Assert.Equal("IHDR", chunks[0]);
        Assert.Equal("IEND", chunks[^1]);
        Assert.True(width > 100 && height > 100, $"chart is {width}x{height}");

        idat.Position = 0;
        using var inflated = new MemoryStream();
        using (var zlib = new ZLibStream(idat, CompressionMode.Decompress))
        {
            zlib.CopyTo(inflated);
        }
        var pixels = inflated.ToArray();
        Assert.Equal(height * (1 + width * 3), pixels.Length);
        var colours = new HashSet<int>();
        for (var row = 0; row < height; row++)
        {
            var start = row * (1 + width * 3);
            Assert.Equal(0, pixels[start]);
            for (var x = 0; x < width; x += 7)
            {
                var i = start + 1 + x * 3;
                colours.Add(pixels[i] << 16 | pixels[i + 1] << 8 | pixels[i + 2]);
            }
        }
        Assert.Contains(0xffffff, colours);
        Assert.True(colours.Count >= 3, "the chart has no coloured bars");
    }
}
