using System.Diagnostics;
using NbdQcow.Tests.Interop.Infrastructure;

namespace NbdQcow.Tests.Interop.Qcow2;

/// <summary>
/// The real server on damaged qcow2 images qemu-img made and a script patched: a refused request logs one
/// warning naming the entry and the rest keeps working; damaged refcounts are refused before serving, not
/// looped on; SIGTERM ends the server within seconds.
/// </summary>
public sealed class Qcow2DamagedImageServeTests
{
    /// <summary>16 MiB image with 0x5a in guest [0, 128k); then the python snippet patches it (f open r+b, l1 and l2 offsets known).</summary>
    private static async Task MakeDamagedImageAsync(string path, string patch)
    {
        await QemuImage.CreateQcow2Async(path, "16M");
        await QemuImage.IoAsync(path, "qcow2", "write -P 0x5a 0 128k");
        var script = $$"""
            import struct
            f = open("{{path}}", "r+b"); h = f.read(72)
            l1 = struct.unpack(">Q", h[40:48])[0]; rt = struct.unpack(">Q", h[48:56])[0]; rtc = struct.unpack(">I", h[56:60])[0]
            f.seek(l1); l2 = struct.unpack(">Q", f.read(8))[0] & 0x00fffffffffffe00
            {{patch}}
            f.close()
            """;
        (await ToolRunner.RunAsync(ToolRunner.Python, ["-c", script])).EnsureSuccess();
    }

    [Fact]
    public async Task OverwritingACompressedEntryAimedAtTheL1TableFailsWithEioLogsOneWarningAndTheServerStopsCleanly()
    {
        // Guest cluster 1 claims to be compressed data stored in the L1 table (one sector at its offset).
        await using var image = await ServedImage.StartAsync(path => MakeDamagedImageAsync(path,
            "f.seek(l2 + 8); f.write(struct.pack('>Q', (1 << 62) | l1))"), "hostile.qcow2");
        var write = await ToolRunner.RunAsync("qemu-io", ["-f", "raw", "-c", "write -P 0x77 64k 64k", "-c", "write -P 0x78 1M 64k",
            "-c", "read -P 0x5a 0 64k", "-c", "read -P 0x78 1M 64k", image.Uri()]);
        Assert.Contains("write failed: Input/output error", write.Stdout + write.Stderr);
        Assert.DoesNotContain("read failed", write.Stdout + write.Stderr);
        Assert.DoesNotContain("Pattern verification failed", write.Stdout + write.Stderr);
        var stopwatch = Stopwatch.StartNew();
        await image.Server.StopAndAssertCleanExitAsync(TimeSpan.FromSeconds(10));
        Assert.True(stopwatch.Elapsed < TimeSpan.FromSeconds(10), $"stopping took {stopwatch.Elapsed}");
        var warnings = image.Server.Output.Split('\n').Where(line => line.Contains("warning:", StringComparison.Ordinal)).ToList();
        Assert.True(warnings.Count == 1 && warnings[0].Contains("L2 entry 0x40000000", StringComparison.Ordinal)
            && warnings[0].Contains("for guest offset 0x10000", StringComparison.Ordinal),
            $"expected one warning naming the entry\n{image.Server.Describe()}");
        var info = (await ToolRunner.RunAsync("qemu-img", ["info", image.ImagePath])).EnsureSuccess();
        Assert.Contains("corrupt: true", info.Stdout);
    }

    [Fact]
    public async Task ServingAnImageWhoseRefcountTableWasZeroedIsRefusedAdvisingARepairInsteadOfHangingOnTheFirstWrite()
    {
        using var folder = new TempDirectory("img");
        var path = folder.File("zeroed.qcow2");
        await MakeDamagedImageAsync(path, "f.seek(rt); f.write(bytes(rtc * 65536))");
        var serve = await ToolRunner.RunAsync(RepositoryRoot.Launcher, ["serve", path, "--listen", "off", "--socket", folder.File("s.sock")],
            TimeSpan.FromSeconds(30));
        Assert.Equal(1, serve.ExitCode);
        Assert.Contains("nbdqcow check --repair all", serve.Stderr);
        var readOnly = await ServerProcess.StartAsync(path, "--read-only");
        await using (readOnly)
        {
            (await ToolRunner.RunAsync("qemu-io", ["-r", "-f", "raw", "-c", "read -P 0x5a 0 128k", readOnly.Uri()])).EnsureSuccess(readOnly.Describe());
            await readOnly.StopAndAssertCleanExitAsync(TimeSpan.FromSeconds(10));
        }
    }
    [Fact]
    public async Task ATruncatedImageNeverHandsTheClustersItsEntriesNameToNewWritesAndReadsThemAsEioNotZeroes()
    {
        // 0x5a in guest [0, 4M): data clusters at host 0x50000..0x450000; the file is then cut at 2 MiB, so the
        // entries of guest 0x1b0000.. name clusters the file no longer has (their refcounts still count them).
        await using var image = await ServedImage.StartAsync(async path =>
        {
            await QemuImage.CreateQcow2Async(path, "16M");
            await QemuImage.IoAsync(path, "qcow2", "write -P 0x5a 0 4M");
            (await ToolRunner.RunAsync(ToolRunner.Python, ["-c", $"open('{path}', 'r+b').truncate(2 * 1024 * 1024)"])).EnsureSuccess();
        }, "truncated.qcow2");
        var io = await ToolRunner.RunAsync("qemu-io", ["-f", "raw", "-c", "write -P 0x78 8M 64k", "-c", "flush",
            "-c", "read -P 0x5a 0 64k", "-c", "read -P 0x78 8M 64k", "-c", "read -P 0x78 0x1b0000 64k", image.Uri()]);
        string output = io.Stdout + io.Stderr;
        Assert.DoesNotContain("write failed", output);
        // The cut-off cluster is gone: the read fails; it never returns the new write's data, nor invented zeroes.
        Assert.Contains("read failed: Input/output error", output);
        Assert.Equal(1, output.Split('\n').Count(line => line.Contains("read failed", StringComparison.Ordinal)));
        Assert.DoesNotContain("Pattern verification failed", output);
        await image.Server.StopAndAssertCleanExitAsync(TimeSpan.FromSeconds(10));
        Assert.Contains("guest offset 0x1b0000", image.Server.Output);
        // The new cluster lies past every cluster the old entries name.
        var map = (await ToolRunner.RunAsync("qemu-img", ["map", "--output=json", image.ImagePath])).EnsureSuccess();
        using var extents = System.Text.Json.JsonDocument.Parse(map.Stdout);
        long host = extents.RootElement.EnumerateArray()
            .Single(extent => extent.GetProperty("start").GetInt64() == 8 << 20).GetProperty("offset").GetInt64();
        Assert.True(host >= 0x450000, $"guest 8M was given host 0x{host:x}, a cluster an old entry names");
    }

    /// <summary>
    /// An L2 entry naming a cluster whose refcount is 0 (past the file's end, or a hole inside it): the allocator
    /// treats that cluster as free, so without a check the next new cluster lands on it and the entry's guest offset
    /// then reads another offset's data. Guest 128k (patched) must fail with EIO, never read guest 9M's data.
    /// </summary>
    [Theory]
    [InlineData("past-eof", "f.seek(l2 + 16); f.write(struct.pack('>Q', (1 << 63) | 0x80000))", 0x20000L)]
    [InlineData("hole", "f.seek(l2 + 16); f.write(struct.pack('>Q', (1 << 63) | 0x70000)); f.seek(0x70000); f.write(bytes(65536))", 0x20000L)]
    [InlineData("uncounted-data", "f.seek(0x20000 + 2 * 6); f.write(bytes(2))", 0x10000L)]
    public async Task AnEntryNamingAClusterWithRefcountZeroNeverReadsDataANewAllocationPutThere(string damage, string patch, long damagedGuest)
    {
        _ = damage;
        await using var image = await ServedImage.StartAsync(path => MakeDamagedImageAsync(path, patch), "uncounted.qcow2");
        var io = await ToolRunner.RunAsync("qemu-io", ["-f", "raw", "-c", "write -P 0x78 8M 64k", "-c", "write -P 0x79 9M 64k",
            "-c", "write -P 0x7a 10M 64k", "-c", "flush",
            "-c", $"read -P 0x79 {damagedGuest} 64k", "-c", $"read -P 0x7a {damagedGuest} 64k", "-c", $"read -P 0x78 {damagedGuest} 64k",
            "-c", "read -P 0x78 8M 64k", "-c", "read -P 0x79 9M 64k", "-c", "read -P 0x7a 10M 64k", "-c", "read -P 0x5a 0 64k", image.Uri()]);
        string output = io.Stdout + io.Stderr;
        Assert.DoesNotContain("write failed", output);
        // Each read of the damaged offset fails; none returns another offset's data (or fails a pattern check).
        Assert.Equal(3, output.Split('\n').Count(line => line.Contains("read failed: Input/output error", StringComparison.Ordinal)));
        Assert.DoesNotContain("Pattern verification failed", output);
        await image.Server.StopAndAssertCleanExitAsync(TimeSpan.FromSeconds(10));
        var warnings = image.Server.Output.Split('\n').Where(line => line.Contains("warning:", StringComparison.Ordinal)).ToList();
        Assert.True(warnings.Count >= 1 && warnings.All(line => line.Contains($"guest offset 0x{damagedGuest:x}", StringComparison.Ordinal)),
            $"expected warnings naming guest 0x{damagedGuest:x} only\n{image.Server.Describe()}");
        // qemu-img sees the damage that was there (a reference without a refcount), not a cluster two entries share.
        var check = await ToolRunner.RunAsync("qemu-img", ["check", image.ImagePath]);
        Assert.Contains("refcount=0 reference=1", check.Stdout + check.Stderr);
        Assert.DoesNotContain("reference=2", check.Stdout + check.Stderr);
        var info = (await ToolRunner.RunAsync("qemu-img", ["info", image.ImagePath])).EnsureSuccess();
        Assert.Contains("corrupt: true", info.Stdout);
    }

    [Fact]
    public async Task AnL2TablePastTheEndOfTheFileFailsOnlyItsGuestRangeReadOnlyAndInfoStillDescribesTheImage()
    {
        // 1 GiB, two L2 tables: 0x5a at guest [0, 128k), 0x5b at 600M; then L1 entry 1 is aimed past the end of the file.
        using var folder = new TempDirectory("img");
        var path = folder.File("lost-l2.qcow2");
        await QemuImage.CreateQcow2Async(path, "1G");
        await QemuImage.IoAsync(path, "qcow2", "write -P 0x5a 0 128k", "write -P 0x5b 600M 64k", "write -P 0x5c 1000M 64k");
        (await ToolRunner.RunAsync(ToolRunner.Python, ["-c", $$"""
            import struct
            f = open("{{path}}", "r+b"); h = f.read(72); l1 = struct.unpack(">Q", h[40:48])[0]
            f.seek(l1 + 8); f.write(struct.pack(">Q", (1 << 63) | 0x4000000)); f.close()
            """])).EnsureSuccess();

        // Writable: refused, naming what to do.
        var writable = await ToolRunner.RunAsync(RepositoryRoot.Launcher, ["serve", path, "--listen", "off", "--socket", folder.File("w.sock")],
            TimeSpan.FromSeconds(30));
        Assert.Equal(1, writable.ExitCode);
        Assert.Contains("L2 table lies past the end of the file", writable.Stderr);
        Assert.Contains("--read-only", writable.Stderr);
        Assert.Contains("nbdqcow recover", writable.Stderr);

        // Read-only: everything but guest [512M, 1G) reads as stored; that range fails with EIO.
        var server = await ServerProcess.StartAsync(path, "--read-only");
        await using (server)
        {
            var io = await ToolRunner.RunAsync("qemu-io", ["-r", "-f", "raw", "-c", "read -P 0x5a 0 128k", "-c", "read -P 0 1M 64k",
                "-c", "read -P 0x5b 600M 64k", "-c", "read 1000M 64k", server.Uri()]);
            string output = io.Stdout + io.Stderr;
            Assert.Equal(2, output.Split('\n').Count(line => line.Contains("read failed: Input/output error", StringComparison.Ordinal)));
            Assert.DoesNotContain("Pattern verification failed", output);
            await server.StopAndAssertCleanExitAsync(TimeSpan.FromSeconds(10));
            var warnings = server.Output.Split('\n').Where(line => line.Contains("warning:", StringComparison.Ordinal)).ToList();
            Assert.True(warnings.Count == 1 && warnings[0].Contains("L1 entry 1", StringComparison.Ordinal)
                && warnings[0].Contains("0x20000000+0x20000000", StringComparison.Ordinal), $"expected one damage line\n{server.Describe()}");
        }

        // info describes the image, counting the lost range as damaged.
        var info = await ToolRunner.RunAsync(RepositoryRoot.Launcher, ["info", "--json", path], TimeSpan.FromSeconds(30));
        Assert.Equal(0, info.ExitCode);
        using var document = System.Text.Json.JsonDocument.Parse(info.Stdout);
        Assert.Equal(512L << 20, document.RootElement.GetProperty("allocation").GetProperty("damaged-bytes").GetInt64());
        Assert.Contains("L1 entry 1", info.Stderr);
    }

    /// <summary>
    /// Tables that overlap: two L1 entries sharing one L2 table while claiming sole ownership (COPIED), or an L2 table
    /// lying on the refcount table. Served read-write, a write through one would rewrite the other (another guest
    /// range's mapping, or the refcounts): refused at open, naming what to do; read-only still serves what is stored.
    /// </summary>
    [Theory]
    [InlineData("shared-l2", "f.seek(l1 + 8); f.write(struct.pack('>Q', (1 << 63) | l2))", "L1 entry 1")]
    [InlineData("l2-on-refcount-table", "f.seek(l1 + 8); f.write(struct.pack('>Q', (1 << 63) | rt))", "L1 entry 1")]
    public async Task OverlappingTablesRefuseAReadWriteServeInsteadOfLettingAWriteRewriteAnotherTable(string damage, string patch, string field)
    {
        _ = damage;
        using var folder = new TempDirectory("img");
        var path = folder.File("overlap.qcow2");
        await QemuImage.CreateQcow2Async(path, "1G");
        await QemuImage.IoAsync(path, "qcow2", "write -P 0x5a 0 128k");
        (await ToolRunner.RunAsync(ToolRunner.Python, ["-c", $$"""
            import struct
            f = open("{{path}}", "r+b"); h = f.read(72)
            l1 = struct.unpack(">Q", h[40:48])[0]; rt = struct.unpack(">Q", h[48:56])[0]
            f.seek(l1); l2 = struct.unpack(">Q", f.read(8))[0] & 0x00fffffffffffe00
            {{patch}}
            f.close()
            """])).EnsureSuccess();
        byte[] before = File.ReadAllBytes(path);
        var serve = await ToolRunner.RunAsync(RepositoryRoot.Launcher, ["serve", path, "--listen", "off", "--socket", folder.File("w.sock")],
            TimeSpan.FromSeconds(15));
        Assert.Equal(1, serve.ExitCode);
        Assert.Contains(field, serve.Stderr);
        Assert.Contains("overlaps", serve.Stderr);
        Assert.Contains("--read-only", serve.Stderr);
        Assert.Equal(before, File.ReadAllBytes(path));
        var readOnly = await ServerProcess.StartAsync(path, "--read-only");
        await using (readOnly)
        {
            (await ToolRunner.RunAsync("qemu-io", ["-r", "-f", "raw", "-c", "read -P 0x5a 0 128k", readOnly.Uri()])).EnsureSuccess(readOnly.Describe());
            await readOnly.StopAndAssertCleanExitAsync(TimeSpan.FromSeconds(10));
        }
    }
}
