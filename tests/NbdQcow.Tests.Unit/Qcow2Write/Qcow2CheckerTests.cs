using NbdQcow.HostIo;
using NbdQcow.Image.Qcow2.Check;
using NbdQcow.Image.Qcow2.Format;

namespace NbdQcow.Tests.Unit.Qcow2Write;

/// <summary>
/// The project's own check agrees with qemu-img check on clean, leaking and corrupt images made by the tests, and
/// its repairs leave images qemu-img calls clean with the data unchanged.
/// </summary>
public sealed class Qcow2CheckerTests
{
    private static string MakeImage(TempDirectory dir, string name = "disk.qcow2")
    {
        var image = dir.File(name);
        QemuImgTool.Create(image, "64M");
        var (code, output) = QemuImgTool.Run("snapshot", "-c", "base", image);
        Assert.True(code == 0, output);
        foreach (var command in new[] { "write -P 1 0 1M", "write -c -P 2 4M 64k", "write -z 8M 128k", "write -P 3 0 64k" })
        {
            var io = System.Diagnostics.Process.Start(new System.Diagnostics.ProcessStartInfo("qemu-io", ["-c", command, image]) { RedirectStandardOutput = true })!;
            io.StandardOutput.ReadToEnd();
            Assert.True(io.WaitForExit(60_000) && io.ExitCode == 0, $"qemu-io {command} failed");
        }
        return image;
    }

    /// <summary>Sets the on-disk refcount of host cluster <paramref name="cluster"/> (block 0 must cover it).</summary>
    private static void SetRefcount(string image, long cluster, ulong value)
    {
        using var file = HostFile.Open(image, new HostFileOptions(false, false));
        var header = Qcow2Header.Read(file);
        var table = BigEndianTable.Read(file, (long)header.RefcountTableOffset, 1);
        var block = new byte[header.ClusterSize];
        file.Read((long)table[0], block);
        RefcountBlockCodec.Set(block, (int)cluster, header.RefcountOrder, value);
        file.Write((long)table[0], block);
    }

    private static long DataClusterOfGuestZero(string image)
    {
        using var file = HostFile.Open(image, new HostFileOptions(true, false));
        var header = Qcow2Header.Read(file);
        var l1 = BigEndianTable.Read(file, (long)header.L1TableOffset, 1);
        var l2 = BigEndianTable.Read(file, (long)(l1[0] & L1Entry.OffsetMask), 1);
        return (long)(l2[0] & L2Entry.OffsetMask) >> header.ClusterBits;
    }

    [Fact]
    public void Clean_image_with_snapshot_compressed_and_zero_clusters_is_clean_for_both_checkers()
    {
        using var dir = new TempDirectory();
        var image = MakeImage(dir);
        QemuImgTool.AssertClean(image);
        var result = Qcow2Checker.Check(image);
        Assert.True(result.IsClean, string.Join("\n", result.CorruptionMessages.Concat(result.LeakMessages)));
        Assert.True(result.MappedGuestClusters > 0);
    }

    [Fact]
    public void Leaked_cluster_is_counted_as_a_leak_not_a_corruption_and_repair_leaks_fixes_it()
    {
        using var dir = new TempDirectory();
        var image = MakeImage(dir);
        long endCluster = (new FileInfo(image).Length + 65535) / 65536;
        using (var stream = File.OpenWrite(image)) stream.SetLength((endCluster + 4) * 65536);
        SetRefcount(image, endCluster + 2, 1);
        Assert.Equal(3, QemuImgTool.Run("check", image).ExitCode);
        var result = Qcow2Checker.Check(image);
        Assert.Equal(0, result.Corruptions);
        Assert.Equal(1, result.Leaks);
        var repaired = Qcow2Checker.Check(image, Qcow2RepairMode.Leaks);
        Assert.True(repaired.IsClean);
        Assert.Equal(1, repaired.RepairedLeaks);
        QemuImgTool.AssertClean(image);
    }

    [Fact]
    public void Refcount_lower_than_references_is_a_corruption_and_repair_all_rebuilds_refcounts_keeping_data()
    {
        using var dir = new TempDirectory();
        var image = MakeImage(dir);
        var before = dir.File("before.raw");
        Assert.Equal(0, QemuImgTool.Run("convert", "-O", "raw", image, before).ExitCode);
        SetRefcount(image, DataClusterOfGuestZero(image), 0);
        Assert.Equal(2, QemuImgTool.Run("check", image).ExitCode);
        var result = Qcow2Checker.Check(image);
        Assert.True(result.Corruptions >= 1, "refcount 0 on a referenced cluster must be a corruption");
        var repaired = Qcow2Checker.Check(image, Qcow2RepairMode.All);
        Assert.True(repaired.IsClean, string.Join("\n", repaired.CorruptionMessages.Concat(repaired.LeakMessages)));
        QemuImgTool.AssertClean(image);
        QemuImgTool.AssertSameAs(image, before);
    }

    [Fact]
    public void Damaged_header_is_reported_as_a_failed_check_naming_the_field()
    {
        using var dir = new TempDirectory();
        var image = MakeImage(dir);
        using (var file = HostFile.Open(image, new HostFileOptions(false, false)))
            file.Write(48, new byte[] { 0, 0, 0, 0, 0, 0, 0x10, 0x01 }); // refcount table offset unaligned
        var result = Qcow2Checker.Check(image);
        Assert.NotNull(result.FatalError);
        Assert.Contains("refcount_table_offset", result.FatalError);
    }
    /// <summary>16 MiB image, 0x5a in guest [0, 4M) (host 0x50000..0x450000), then the file cut at 2 MiB.</summary>
    private static string MakeTruncatedImage(TempDirectory dir)
    {
        var image = dir.File("cut.qcow2");
        QemuImgTool.Create(image, "16M");
        var io = System.Diagnostics.Process.Start(new System.Diagnostics.ProcessStartInfo("qemu-io", ["-c", "write -P 0x5a 0 4M", image]) { RedirectStandardOutput = true })!;
        io.StandardOutput.ReadToEnd();
        Assert.True(io.WaitForExit(60_000) && io.ExitCode == 0, "qemu-io write failed");
        using (var file = File.OpenWrite(image)) file.SetLength(2 << 20);
        return image;
    }

    private static ulong GetRefcount(string image, long cluster)
    {
        using var file = HostFile.Open(image, new HostFileOptions(true, false));
        var header = Qcow2Header.Read(file);
        var table = BigEndianTable.Read(file, (long)header.RefcountTableOffset, 1);
        var block = new byte[header.ClusterSize];
        file.Read((long)table[0], block);
        return RefcountBlockCodec.Get(block, (int)cluster, header.RefcountOrder);
    }

    [Fact]
    public void Clusters_cut_off_a_truncated_file_are_still_referenced_so_repair_leaks_keeps_their_refcounts()
    {
        using var dir = new TempDirectory();
        var image = MakeTruncatedImage(dir);
        var result = Qcow2Checker.Check(image);
        // Guest 0x1b0000..0x3f0000 name host clusters 32..68, past the end: corruption, and no leak.
        Assert.Equal(37, result.Corruptions);
        Assert.True(result.Leaks == 0, string.Join("\n", result.LeakMessages.Take(3)));
        Qcow2Checker.Check(image, Qcow2RepairMode.Leaks);
        // Freed, the allocator would hand cluster 32 to the next write and guest 0x1b0000 would read that data.
        for (long cluster = 32; cluster <= 68; cluster++)
            Assert.Equal(1UL, GetRefcount(image, cluster));
    }

    [Fact]
    public void Repair_all_of_a_truncated_file_writes_nothing_and_names_recover()
    {
        using var dir = new TempDirectory();
        var image = MakeTruncatedImage(dir);
        byte[] before = File.ReadAllBytes(image);
        var result = Qcow2Checker.Check(image, Qcow2RepairMode.All);
        Assert.NotNull(result.FatalError);
        Assert.Contains("nbdqcow recover", result.FatalError);
        // A rebuilt structure at the end would sit on host 0x200000 (guest 0x1b0000's cluster) and grow the file over
        // the rest, which would then read as zeroes and check clean.
        Assert.Equal(before, File.ReadAllBytes(image));
    }

    [Fact]
    public void Repair_all_of_an_open_truncated_file_reports_the_refusal_instead_of_throwing()
    {
        using var dir = new TempDirectory();
        var image = MakeTruncatedImage(dir);
        byte[] before = File.ReadAllBytes(image);
        Qcow2CheckResult result;
        using (var file = HostFile.Open(image, new HostFileOptions(false, false)))
            result = Qcow2Checker.Check(file, Qcow2RepairMode.All);
        Assert.NotNull(result.FatalError);
        Assert.Contains("nbdqcow recover", result.FatalError);
        Assert.True(result.Corruptions > 0, "the scan's findings are kept beside the refusal");
        Assert.Equal(before, File.ReadAllBytes(image));
    }
}
