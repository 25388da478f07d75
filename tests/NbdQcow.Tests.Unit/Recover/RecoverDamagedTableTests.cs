using System.Diagnostics;
using NbdQcow.Image.Qcow2.Recover;
using NbdQcow.Tests.Unit.HostIo;
using NbdQcow.Tests.Unit.Qcow2;

namespace NbdQcow.Tests.Unit.Recover;

/// <summary>Damaged tables: bad entries are skipped and reported, never trusted; recovery finishes fast and writes the rest.</summary>
public sealed class RecoverDamagedTableTests
{
    /// <summary>4 KiB clusters, 16 MiB: slot 0 maps 0..2M (16 data clusters at 0), slot 2 maps 5M.. (16 clusters).</summary>
    private static (TempDirectory Folder, string Image) Build()
    {
        var folder = new TempDirectory("unit", diskBacked: true);
        QemuTools.Bash(folder.Path, """
            qemu-img create -q -f qcow2 -o cluster_size=4k img.qcow2 16M
            qemu-io -f qcow2 img.qcow2 -c 'write -P 0x11 0 64k' -c 'write -P 0x22 5M 64k' >/dev/null
            cp img.qcow2 original.qcow2
            """);
        return (folder, folder.File("img.qcow2"));
    }

    private static long L2Of(string image, long slot) => RecoverFixture.L1Entry(image, slot) & 0x00ff_ffff_ffff_fe00L;

    private static async Task<RecoveryReport> RecoverBounded(string image, string output)
    {
        var watch = Stopwatch.StartNew();
        string before = RecoverFixture.Sha256(image);
        var report = await RecoverFixture.RecoverAsync(image, output);
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(30), $"took {watch.Elapsed}");
        Assert.Equal(before, RecoverFixture.Sha256(image)); // the damaged image is never written
        RecoverFixture.AssertCheckClean(output);
        return report;
    }

    [Fact]
    public async Task Garbled_L2_entry_is_skipped_and_reported_and_the_rest_of_the_table_recovered()
    {
        var (folder, image) = Build();
        using var _ = folder;
        RecoverFixture.WriteU64(image, L2Of(image, 0) + 8, 0xdeadbeef01020304); // entry 1 (guest 4k..8k)

        var report = await RecoverBounded(image, folder.File("out.qcow2"));

        Assert.Equal(RecoveryExitCode.RecoveredWithLosses, report.ExitCode);
        Assert.Contains(report.Findings, f => f.Kind == "l2-entry" && f.Message.Contains("entry 1 (guest 0x1000)"));
        QemuTools.Bash(folder.Path, "qemu-io -f qcow2 out.qcow2 -c 'read -P 0x11 0 4k' -c 'read -P 0 4k 4k' -c 'read -P 0x11 8k 56k' -c 'read -P 0x22 5M 64k' | grep -c '^read' | grep -q 4");
        // The data cluster the garbled entry used to map is saved as orphan data.
        Assert.Equal(1, report.OrphanDataClusters);
        var index = File.ReadAllText(folder.File("out.qcow2.lost/index.json"));
        Assert.Contains("\"orphan-data\"", index);
        Assert.Contains("refcount 1 on disk (allocated", index);
    }

    [Fact]
    public async Task L2_pointer_beyond_the_end_of_the_file_is_refused_and_its_table_found_again_as_an_orphan()
    {
        var (folder, image) = Build();
        using var _ = folder;
        long table = L2Of(image, 0);
        RecoverFixture.WriteU64(image, RecoverFixture.L1TableOffset(image), (1UL << 63) | (1UL << 40));

        var report = await RecoverBounded(image, folder.File("out.qcow2"));

        Assert.Contains(report.Findings, f => f.Kind == "l1-entry" && f.Message.Contains("past the end of the file"));
        var decision = Assert.Single(report.OrphanDecisions);
        Assert.Equal(table, decision.HostOffset);
        Assert.Contains(0L, decision.CandidateSlots); // the true slot is among the candidates
        Assert.Null(decision.PlacedSlot);            // but 7 slots are free: no guessing
        QemuTools.Bash(folder.Path, "qemu-io -f qcow2 out.qcow2 -c 'read -P 0x22 5M 64k' | grep -q 'read 65536'");
    }

    [Fact]
    public async Task Truncated_file_recovers_what_is_left_and_reports_the_clusters_cut_off()
    {
        var (folder, image) = Build();
        using var _ = folder;
        long length = new FileInfo(image).Length;
        using (var f = new FileStream(image, FileMode.Open)) f.SetLength(length - 6000);

        var report = await RecoverBounded(image, folder.File("out.qcow2"));

        Assert.Equal(RecoveryExitCode.RecoveredWithLosses, report.ExitCode);
        Assert.Contains(report.Findings, f => f.Kind == "l2-entry" && f.Message.Contains("past the end of the file"));
        Assert.Contains(report.Findings, f => f.Kind == "data" && f.Message.Contains("cut short"));
        QemuTools.Bash(folder.Path, "qemu-io -f qcow2 out.qcow2 -c 'read -P 0x11 0 64k' | grep -q 'read 65536'");
    }

    [Fact]
    public async Task Corrupt_refcount_table_does_not_stop_recovery_of_every_mapping()
    {
        var (folder, image) = Build();
        using var _ = folder;
        RecoverFixture.WriteBytes(image, (long)RecoverFixture.ReadU64(image, 48), Enumerable.Repeat((byte)0xff, 4096).ToArray());

        var report = await RecoverBounded(image, folder.File("out.qcow2"));

        Assert.True(RecoverFixture.Identical(folder.File("out.qcow2"), folder.File("original.qcow2")));
        Assert.Contains(report.Findings, f => f.Kind == "refcount");
    }

    [Fact]
    public async Task Hostile_L1_size_is_bounded_by_the_virtual_size_and_reported()
    {
        var (folder, image) = Build();
        using var _ = folder;
        RecoverFixture.WriteBytes(image, 36, [0xff, 0xff, 0xff, 0xff]);

        var report = await RecoverBounded(image, folder.File("out.qcow2"));

        Assert.True(RecoverFixture.Identical(folder.File("out.qcow2"), folder.File("original.qcow2")));
        Assert.Contains(report.Findings, f => f.Kind == "l1-entry" && f.Message.Contains("4294967295"));
    }

    [Fact]
    public async Task Garbled_L1_offset_in_the_header_is_overcome_by_the_old_L1_table_still_in_the_file()
    {
        var (folder, image) = Build();
        using var _ = folder;
        RecoverFixture.WriteU64(image, 40, 1UL << 50);

        var report = await RecoverBounded(image, folder.File("out.qcow2"));

        Assert.True(RecoverFixture.Identical(folder.File("out.qcow2"), folder.File("original.qcow2")), RecoveryReportFormatter.ToText(report));
        Assert.Equal(2, report.OrphanL2TablesPlaced);
        Assert.All(report.OrphanDecisions, d => Assert.Contains("old L1 table copy", d.Reason));
    }

    [Fact]
    public async Task Entries_onto_metadata_and_a_data_cluster_mapped_twice_are_reported_and_not_trusted()
    {
        var (folder, image) = Build();
        using var _ = folder;
        long table0 = L2Of(image, 0), table2 = L2Of(image, 2);
        ulong secondData = RecoverFixture.ReadU64(image, table0 + 8);
        RecoverFixture.WriteU64(image, table0 + 2 * 8, (1UL << 63) | (ulong)RecoverFixture.L1TableOffset(image)); // guest 8k -> the L1 table
        RecoverFixture.WriteU64(image, table2 + 40 * 8, secondData);                                                // guest 4M + 40 * 4k: a second use of guest 4k's cluster

        var report = await RecoverBounded(image, folder.File("out.qcow2"));

        Assert.Contains(report.Findings, f => f.Kind == "l2-entry" && f.Message.Contains("is metadata"));
        Assert.Contains(report.Findings, f => f.Kind == "conflict" && f.Message.Contains("placed at none"));
        // The entry onto metadata reads as zero; the cluster mapped twice goes to neither place (lost+found has it).
        QemuTools.Bash(folder.Path, "qemu-io -f qcow2 out.qcow2 -c 'read -P 0 8k 4k' -c 'read -P 0 4k 4k' -c 'read -P 0 4256k 4k' -c 'read -P 0x11 12k 4k' | grep -c '^read' | grep -q 4");
        Assert.Equal(1, report.ConflictingClusters);
    }
}
