using System.Text.Json;
using NbdQcow.Image.Qcow2.Recover;
using NbdQcow.Tests.Unit.HostIo;
using NbdQcow.Tests.Unit.Qcow2;

namespace NbdQcow.Tests.Unit.Recover;

/// <summary>
/// The seed report built for real: L1 entries that never reached the disk while their L2 tables and data did. qemu-img
/// then reads zeroes and its check finds nothing; recover brings the data back when the slot is certain and saves it to
/// lost+found with the right candidates when it is not.
/// </summary>
public sealed class RecoverLostL1EntryTests
{
    [Theory]
    [InlineData("qemu-img create -q -f qcow2 -o cluster_size=2M img.qcow2 10G", 3)]
    [InlineData("qemu-img create -q -f qcow2 -o cluster_size=2M,extended_l2=on img.qcow2 10G", 3)]
    [InlineData("qemu-img create -q -f qcow2 -o cluster_size=2M,compat=0.10 img.qcow2 10G", 3)]
    public async Task Seed_scenario_2M_clusters_lost_L1_entry_data_comes_back_in_the_only_slot(string create, int dataClusters)
    {
        using var folder = new TempDirectory("unit", diskBacked: true);
        QemuTools.Bash(folder.Path, $"""
            {create}
            qemu-io -f qcow2 img.qcow2 -c 'write -P 0x33 0 4M' -c 'write -P 0x44 5G 2M' >/dev/null
            cp img.qcow2 original.qcow2
            """);
        RecoverFixture.ZeroL1Entry(folder.File("img.qcow2"), 0);
        Assert.False(RecoverFixture.Identical(folder.File("img.qcow2"), folder.File("original.qcow2"))); // qemu reads zeroes now

        var report = await RecoverFixture.RecoverAsync(folder.File("img.qcow2"), folder.File("out.qcow2"));

        Assert.True(RecoverFixture.Identical(folder.File("out.qcow2"), folder.File("original.qcow2")), RecoveryReportFormatter.ToText(report));
        RecoverFixture.AssertCheckClean(folder.File("out.qcow2"));
        var decision = Assert.Single(report.OrphanDecisions);
        Assert.Equal(0, decision.PlacedSlot);
        Assert.Contains("only L1 slot", decision.Reason);
        Assert.Equal(dataClusters, report.ClustersFromOrphanTables);
        Assert.Equal(RecoveryExitCode.RecoveredCompletely, report.ExitCode); // the lost L1 entry is damage, and everything was placed
        Assert.Equal(0, report.LostClusters);
    }

    [Fact]
    public async Task Seed_report_exactly_qemu_img_check_finds_nothing_and_reads_zeroes_yet_recover_brings_the_data_back()
    {
        using var folder = new TempDirectory("unit", diskBacked: true);
        QemuTools.Bash(folder.Path, """
            qemu-img create -q -f qcow2 -o cluster_size=2M img.qcow2 400G
            qemu-io -f qcow2 img.qcow2 -c 'write -P 0x5e 0 6M' -c 'write -P 0x5f 300G 1M' >/dev/null
            cp img.qcow2 original.qcow2
            """);
        string image = folder.File("img.qcow2");
        const int clusterBits = 21;
        long table = RecoverFixture.L1Entry(image, 0) & 0x00ff_ffff_ffff_fe00L;
        RecoverFixture.ZeroL1Entry(image, 0);
        // Neither the L1 entry nor the refcounts of the new table and data reached the disk: 16-bit refcounts of
        // every cluster from the L2 table to the end of the file read 0.
        long block = (long)RecoverFixture.ReadU64(image, (long)RecoverFixture.ReadU64(image, 48));
        long end = new FileInfo(image).Length >> clusterBits;
        for (long c = table >> clusterBits; c < end; c++)
            RecoverFixture.WriteBytes(image, block + c * 2, [0, 0]);
        RecoverFixture.AssertCheckClean(image); // qemu-img check finds nothing wrong
        QemuTools.Bash(folder.Path, "qemu-io -f qcow2 img.qcow2 -c 'read -P 0 0 6M' | grep -q 'read 6291456'"); // and reads zeroes

        var report = await RecoverFixture.RecoverAsync(image, folder.File("out.qcow2"));

        Assert.True(RecoverFixture.Identical(folder.File("out.qcow2"), folder.File("original.qcow2")), RecoveryReportFormatter.ToText(report));
        RecoverFixture.AssertCheckClean(folder.File("out.qcow2"));
        Assert.Equal(0, Assert.Single(report.OrphanDecisions).PlacedSlot);
    }

    [Fact]
    public async Task Lost_L1_entry_over_compressed_clusters_brings_them_back_decompressed()
    {
        using var folder = new TempDirectory("unit", diskBacked: true);
        QemuTools.Bash(folder.Path, """
            qemu-img create -q -f raw src.raw 64M
            qemu-io -f raw src.raw -c 'write -P 0x44 0 1M' -c 'write -P 0x45 40M 1M' >/dev/null
            qemu-img convert -c -O qcow2 -o cluster_size=64k src.raw img.qcow2
            """);
        RecoverFixture.ZeroL1Entry(folder.File("img.qcow2"), 0); // 64k clusters: one L1 slot covers 512 MiB

        var report = await RecoverFixture.RecoverAsync(folder.File("img.qcow2"), folder.File("out.qcow2"));

        Assert.True(RecoverFixture.Identical(folder.File("out.qcow2"), folder.File("src.raw"), "raw"), RecoveryReportFormatter.ToText(report));
        Assert.Equal(32, report.CompressedClustersRecovered);
        Assert.Equal(0, Assert.Single(report.OrphanDecisions).PlacedSlot);
    }

    [Fact]
    public async Task Lost_L1_entry_with_refcounts_never_written_is_recovered_from_the_only_empty_slot()
    {
        using var folder = new TempDirectory("unit", diskBacked: true);
        QemuTools.Bash(folder.Path, """
            qemu-img create -q -f qcow2 -o cluster_size=4k img.qcow2 8M
            qemu-io -f qcow2 img.qcow2 -c 'write -P 0x11 0 8k' -c 'write -P 0x12 2M 8k' -c 'write -P 0x13 4M 8k' -c 'write -P 0x14 6M 64k' >/dev/null
            cp img.qcow2 original.qcow2
            """);
        string image = folder.File("img.qcow2");
        RecoverFixture.ZeroL1Entry(image, 3);
        // Refcounts of the lost allocations never written either: the whole refcount table reads as garbage.
        long refcountTable = (long)RecoverFixture.ReadU64(image, 48);
        RecoverFixture.WriteBytes(image, refcountTable, Enumerable.Repeat((byte)0xee, 4096).ToArray());

        var report = await RecoverFixture.RecoverAsync(image, folder.File("out.qcow2"));

        Assert.True(RecoverFixture.Identical(folder.File("out.qcow2"), folder.File("original.qcow2")), RecoveryReportFormatter.ToText(report));
        RecoverFixture.AssertCheckClean(folder.File("out.qcow2"));
        Assert.Equal(3, Assert.Single(report.OrphanDecisions).PlacedSlot);
        Assert.Contains(report.Findings, f => f.Kind == "refcount");
    }

    [Fact]
    public async Task Two_lost_L1_entries_among_many_free_slots_go_to_lost_and_found_with_both_true_slots_as_candidates()
    {
        using var folder = new TempDirectory("unit", diskBacked: true);
        QemuTools.Bash(folder.Path, """
            qemu-img create -q -f qcow2 -o cluster_size=4k img.qcow2 64M
            qemu-io -f qcow2 img.qcow2 -c 'write -P 0x55 0 64k' -c 'write -P 0x66 10M 8k' -c 'write -P 0x77 20M 4k' >/dev/null
            """);
        string image = folder.File("img.qcow2");
        RecoverFixture.ZeroL1Entry(image, 5);  // 10M with 2 MiB per L2 table
        RecoverFixture.ZeroL1Entry(image, 10); // 20M

        var report = await RecoverFixture.RecoverAsync(image, folder.File("out.qcow2"));

        Assert.Equal(RecoveryExitCode.RecoveredWithLosses, report.ExitCode); // data in lost+found only: recovered with losses
        Assert.Equal(2, report.OrphanDecisions.Count);
        Assert.All(report.OrphanDecisions, d => Assert.Null(d.PlacedSlot));
        Assert.Equal(2 + 2 + 1, report.LostClusters); // two tables, 2 + 1 data clusters
        using var index = JsonDocument.Parse(File.ReadAllText(folder.File("out.qcow2.lost/index.json")));
        var entries = index.RootElement.GetProperty("entries").EnumerateArray().ToList();
        var data = entries.Where(e => e.GetProperty("kind").GetString() == "l2-data").ToList();
        Assert.Equal(3, data.Count);
        // Every data cluster lists its true guest offset among the candidates, and the bytes saved are its data.
        var raw = File.ReadAllBytes(folder.File("out.qcow2.lost/clusters.raw"));
        foreach (var (guest, pattern) in new[] { (10L << 20, 0x66), ((10L << 20) + 4096, 0x66), (20L << 20, 0x77) })
        {
            var entry = Assert.Single(data, e => e.GetProperty("candidate-guest-offsets").EnumerateArray().Select(x => x.GetInt64()).Contains(guest)
                && raw[e.GetProperty("offset-in-data-file").GetInt64()] == pattern);
            Assert.Equal(31, entry.GetProperty("candidate-count").GetInt64()); // 32 slots, only slot 0 still mapped
        }
        // The active data (slot 0) still made it into the output.
        QemuTools.Bash(folder.Path, "qemu-io -f qcow2 out.qcow2 -c 'read -P 0x55 0 64k' -c 'read -P 0 10M 8k' | grep -q 'read 8192'");
    }

    [Fact]
    public async Task Orphan_table_that_is_a_snapshots_copy_on_write_copy_is_placed_at_the_snapshots_slot()
    {
        using var folder = new TempDirectory("unit", diskBacked: true);
        QemuTools.Bash(folder.Path, """
            qemu-img create -q -f qcow2 -o cluster_size=4k img.qcow2 64M
            qemu-io -f qcow2 img.qcow2 -c 'write -P 0x55 10M 64k' -c 'write -P 0x12 0 4k' >/dev/null
            qemu-img snapshot -c s1 img.qcow2
            qemu-io -f qcow2 img.qcow2 -c 'write -P 0x99 10M 4k' -c 'write -P 0x98 30M 4k' >/dev/null
            cp img.qcow2 original.qcow2
            """);
        RecoverFixture.ZeroL1Entry(folder.File("img.qcow2"), 5);

        var report = await RecoverFixture.RecoverAsync(folder.File("img.qcow2"), folder.File("out.qcow2"));

        Assert.True(RecoverFixture.Identical(folder.File("out.qcow2"), folder.File("original.qcow2")), RecoveryReportFormatter.ToText(report));
        var decision = Assert.Single(report.OrphanDecisions);
        Assert.Equal(5, decision.PlacedSlot);
        Assert.Contains("snapshot", decision.Reason);
    }

    [Fact]
    public async Task Fill_from_snapshots_takes_the_snapshots_older_table_for_a_slot_with_no_table_at_all()
    {
        using var folder = new TempDirectory("unit", diskBacked: true);
        QemuTools.Bash(folder.Path, """
            qemu-img create -q -f qcow2 -o cluster_size=4k img.qcow2 64M
            qemu-io -f qcow2 img.qcow2 -c 'write -P 0x55 10M 64k' >/dev/null
            qemu-img snapshot -c s1 img.qcow2
            """);
        // The active L1 entry is lost and no orphan table exists (the slot was shared with the snapshot).
        RecoverFixture.ZeroL1Entry(folder.File("img.qcow2"), 5);

        var without = await RecoverFixture.RecoverAsync(folder.File("img.qcow2"), folder.File("plain.qcow2"));
        Assert.Contains(without.Findings, f => f.Message.Contains("snapshot \"s1\" maps it"));
        var with = await RecoverFixture.RecoverAsync(folder.File("img.qcow2"), folder.File("filled.qcow2"),
            new RecoveryOptions { OutputPath = "", FillFromSnapshots = true });

        Assert.Equal(16, with.ClustersFilledFromSnapshots);
        QemuTools.Bash(folder.Path, "qemu-io -f qcow2 filled.qcow2 -c 'read -P 0x55 10M 64k' | grep -q 'read 65536'");
        QemuTools.Bash(folder.Path, "qemu-io -f qcow2 plain.qcow2 -c 'read -P 0 10M 64k' | grep -q 'read 65536'");
    }

    /// <summary>An in-memory history source: what the journal will provide through the same seam.</summary>
    /// <summary>4 KiB clusters, data in L1 slots 5 and 10 whose entries are then zeroed; original.qcow2 keeps the intact copy.</summary>
    private static (string Image, long L1, long Entry5, long Entry10) ImageWithL1Slots5And10Lost(TempDirectory folder)
    {
        QemuTools.Bash(folder.Path, """
            qemu-img create -q -f qcow2 -o cluster_size=4k img.qcow2 64M
            qemu-io -f qcow2 img.qcow2 -c 'write -P 0x66 10M 8k' -c 'write -P 0x77 20M 4k' >/dev/null
            cp img.qcow2 original.qcow2
            """);
        string image = folder.File("img.qcow2");
        long l1 = RecoverFixture.L1TableOffset(image);
        long entry5 = RecoverFixture.L1Entry(image, 5), entry10 = RecoverFixture.L1Entry(image, 10);
        RecoverFixture.ZeroL1Entry(image, 5);
        RecoverFixture.ZeroL1Entry(image, 10);
        return (image, l1, entry5, entry10);
    }

    private static byte[] Be(long v) => BitConverter.GetBytes(System.Buffers.Binary.BinaryPrimitives.ReverseEndianness(v));

    private sealed class InMemoryHistory(IEnumerable<RecoveryTableWrite> writes) : IRecoveryHistorySource
    {
        public string Name => "test history";
        public IEnumerable<RecoveryTableWrite> ReadTableWrites() => writes;
    }

    [Fact]
    public async Task History_source_that_saw_the_L1_update_places_tables_the_file_alone_cannot()
    {
        using var folder = new TempDirectory("unit", diskBacked: true);
        var (image, l1, entry5, entry10) = ImageWithL1Slots5And10Lost(folder);
        // Slot 5 is in the history's newest L1 image (applied over the file); slot 10 only in an older write that a
        // later write of the same entry cleared, so it counts as evidence but not as the current mapping.
        var history = new InMemoryHistory([
            new RecoveryTableWrite(7, l1 + 10 * 8, Be(entry10)),
            new RecoveryTableWrite(9, l1 + 5 * 8, Be(entry5)),
            new RecoveryTableWrite(8, l1 + 10 * 8, Be(0)),
        ]);

        var report = await RecoverFixture.RecoverAsync(image, folder.File("out.qcow2"), new RecoveryOptions { OutputPath = "", History = [history] });

        Assert.True(RecoverFixture.Identical(folder.File("out.qcow2"), folder.File("original.qcow2")), RecoveryReportFormatter.ToText(report));
        var decision = Assert.Single(report.OrphanDecisions);
        Assert.Equal(10, decision.PlacedSlot);
        Assert.Contains("history test history (sequence 7)", decision.Reason);
        Assert.Equal(0, report.LostClusters);
    }

    [Fact]
    public async Task History_writes_already_in_place_are_evidence_only_and_still_place_both_tables()
    {
        using var folder = new TempDirectory("unit", diskBacked: true);
        var (image, l1, entry5, entry10) = ImageWithL1Slots5And10Lost(folder);
        // Both writes were checkpointed (in place) according to the source: not laid over the file, only evidence.
        var history = new InMemoryHistory([
            new RecoveryTableWrite(3, l1 + 5 * 8, Be(entry5), InPlace: true),
            new RecoveryTableWrite(4, l1 + 10 * 8, Be(entry10), InPlace: true),
        ]);

        var report = await RecoverFixture.RecoverAsync(image, folder.File("out.qcow2"), new RecoveryOptions { OutputPath = "", History = [history] });

        Assert.True(RecoverFixture.Identical(folder.File("out.qcow2"), folder.File("original.qcow2")), RecoveryReportFormatter.ToText(report));
        Assert.Equal(2, report.OrphanL2TablesPlaced);
        Assert.All(report.OrphanDecisions, d => Assert.Contains("history test history", d.Reason));
    }
}
