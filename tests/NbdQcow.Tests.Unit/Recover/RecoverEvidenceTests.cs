using System.Text.Json;
using NbdQcow.Image.Qcow2.Recover;
using NbdQcow.Tests.Unit.HostIo;
using NbdQcow.Tests.Unit.Qcow2;

namespace NbdQcow.Tests.Unit.Recover;

/// <summary>
/// Damage where two mappings compete (a misdirected L2 write, a deleted snapshot's stale table), lost compressed
/// streams inside shared host clusters, and the exit codes that tell complete recovery from recovery with losses.
/// Every image is made by qemu-img/qemu-io and damaged the way a host crash damages it.
/// </summary>
public sealed class RecoverEvidenceTests
{
    private static long L2Of(string image, long slot) => RecoverFixture.L1Entry(image, slot) & 0x00ff_ffff_ffff_fe00L;

    private static List<JsonElement> LostEntries(string output)
    {
        using var index = JsonDocument.Parse(File.ReadAllText(output + ".lost/index.json"));
        return index.RootElement.GetProperty("entries").EnumerateArray().Select(e => e.Clone()).ToList();
    }

    private static List<long> Candidates(JsonElement entry) =>
        entry.GetProperty("candidate-guest-offsets").EnumerateArray().Select(x => x.GetInt64()).ToList();

    [Fact]
    public async Task Misdirected_L2_sector_write_never_gives_one_guest_offsets_data_to_another_and_saves_both_candidates()
    {
        using var folder = new TempDirectory("unit", diskBacked: true);
        QemuTools.Bash(folder.Path, """
            qemu-img create -q -f qcow2 -o cluster_size=4k img.qcow2 8M
            qemu-io -f qcow2 img.qcow2 -c 'write -P 0x11 0 64k' -c 'write -P 0x22 2M 64k' >/dev/null
            """);
        string image = folder.File("img.qcow2");
        // The first sector of slot 0's L2 table lands on the first sector of slot 1's table: guest 2M..2M+64k now
        // maps the host clusters of guest 0..64k, and slot 1's own data clusters are orphans.
        var sector = new byte[512];
        using (var f = File.OpenRead(image)) { f.Position = L2Of(image, 0); f.ReadExactly(sector); }
        RecoverFixture.WriteBytes(image, L2Of(image, 1), sector);
        string before = RecoverFixture.Sha256(image);

        var report = await RecoverFixture.RecoverAsync(image, folder.File("out.qcow2"));

        string text = RecoveryReportFormatter.ToText(report);
        Assert.Equal(before, RecoverFixture.Sha256(image));
        RecoverFixture.AssertCheckClean(folder.File("out.qcow2"));
        // No guest offset reads another's data: 2M must never read 0x11 (nothing tells which claim is true, so
        // neither is placed and both read as zero).
        QemuTools.Bash(folder.Path, "qemu-io -f qcow2 out.qcow2 -c 'read -P 0 2M 64k' -c 'read -P 0 0 64k' | grep -c '^read' | grep -q 2");
        Assert.Equal(16, report.ConflictingClusters);
        Assert.Contains(report.Findings, f => f.Kind == "conflict");
        Assert.Equal(RecoveryExitCode.RecoveredWithLosses, report.ExitCode);
        var lost = LostEntries(folder.File("out.qcow2"));
        var raw = File.ReadAllBytes(folder.File("out.qcow2.lost/clusters.raw"));
        var conflicts = lost.Where(e => e.GetProperty("kind").GetString() == "conflict").ToList();
        Assert.Equal(16, conflicts.Count);
        Assert.All(conflicts, e => Assert.Equal(0x11, raw[e.GetProperty("offset-in-data-file").GetInt64()]));
        for (long i = 0; i < 16; i++)
            Assert.Single(conflicts, e => Candidates(e).SequenceEqual([i * 4096, (2L << 20) + i * 4096]));
        // Slot 1's own data, which the misdirected write orphaned, is saved too.
        Assert.Equal(16, lost.Count(e => e.GetProperty("kind").GetString() == "orphan-data" && raw[e.GetProperty("offset-in-data-file").GetInt64()] == 0x22));
        Assert.Contains("CONFLICT", text);
        // The report says per guest range what happened: slot 0 and 1 in place from the active tables, the
        // contested clusters in lost+found.
        Assert.Contains(report.Ranges, r => r.GuestOffset == 0 && r.Outcome == "in-place" && r.Evidence.Contains("active"));
        Assert.Contains(report.Ranges, r => r.GuestOffset == 2L << 20 && r.Length == 4096 && r.Outcome == "lost+found" && r.Evidence.Contains("contested"));
        Assert.Contains("RANGE 0x200000+0x1000 lost+found", text);
    }

    [Fact]
    public async Task Lost_L1_with_a_deleted_snapshots_stale_table_still_in_the_file_places_the_live_table_by_its_refcount()
    {
        using var folder = new TempDirectory("unit", diskBacked: true);
        QemuTools.Bash(folder.Path, """
            qemu-img create -q -f qcow2 -o cluster_size=64k img.qcow2 256M
            qemu-io -f qcow2 img.qcow2 -c 'write -P 0x31 0 1M' -c 'write -P 0x32 100M 256k' >/dev/null
            qemu-img snapshot -c old img.qcow2
            qemu-io -f qcow2 img.qcow2 -c 'write -P 0x41 0 128k' -c 'write -P 0x42 200M 64k' >/dev/null
            qemu-img snapshot -d old --image-opts driver=qcow2,file.filename=img.qcow2,pass-discard-snapshot=off
            cp img.qcow2 original.qcow2
            """);
        string image = folder.File("img.qcow2");
        RecoverFixture.AssertCheckClean(image);
        RecoverFixture.ZeroL1Entry(image, 0); // 64 KiB clusters: slot 0 covers all 256 MiB

        var report = await RecoverFixture.RecoverAsync(image, folder.File("out.qcow2"));

        string text = RecoveryReportFormatter.ToText(report);
        Assert.True(RecoverFixture.Identical(folder.File("out.qcow2"), folder.File("original.qcow2")), text);
        RecoverFixture.AssertCheckClean(folder.File("out.qcow2"));
        var placed = Assert.Single(report.OrphanDecisions, d => d.PlacedSlot is not null);
        Assert.Equal(0, placed.PlacedSlot);
        var stale = Assert.Single(report.OrphanDecisions, d => d.PlacedSlot is null);
        Assert.Contains("refcount 0", stale.Reason);
        Assert.Equal(RecoveryExitCode.RecoveredCompletely, report.ExitCode);
        Assert.Equal(0, report.LostGuestClusters);
        Assert.Equal(report.FreedLeftovers, report.LostClusters); // the freed snapshot leftovers are kept, not counted as losses
    }

    [Fact]
    public async Task Zeroed_refcount_table_is_damage_not_a_clean_result()
    {
        using var folder = new TempDirectory("unit", diskBacked: true);
        QemuTools.Bash(folder.Path, """
            qemu-img create -q -f qcow2 -o cluster_size=64k img.qcow2 64M
            qemu-io -f qcow2 img.qcow2 -c 'write -P 0x21 0 1M' -c 'write -P 0x22 30M 64k' >/dev/null
            cp img.qcow2 original.qcow2
            """);
        string image = folder.File("img.qcow2");
        RecoverFixture.WriteBytes(image, (long)RecoverFixture.ReadU64(image, 48), new byte[65536]);

        var report = await RecoverFixture.RecoverAsync(image, folder.File("out.qcow2"));

        Assert.True(RecoverFixture.Identical(folder.File("out.qcow2"), folder.File("original.qcow2")), RecoveryReportFormatter.ToText(report));
        Assert.Equal(RecoveryExitCode.RecoveredCompletely, report.ExitCode);
        Assert.Contains(report.Findings, f => f.Kind == "check");
        Assert.Contains("recovered completely", RecoveryReportFormatter.ToText(report));
    }

    /// <summary>64 KiB clusters, each guest cluster of the first 1 MiB its own pattern, compressed: 16 small streams share one host cluster.</summary>
    private static string CompressedImage(TempDirectory folder)
    {
        QemuTools.Bash(folder.Path, """
            qemu-img create -q -f raw src.raw 64M
            args=""; for i in $(seq 0 15); do args="$args -c 'write -P $((0x50 + i)) $((i * 65536)) 64k'"; done
            eval qemu-io -f raw src.raw $args >/dev/null
            qemu-img convert -c -O qcow2 -o cluster_size=64k src.raw img.qcow2
            """);
        return folder.File("img.qcow2");
    }

    [Fact]
    public async Task Lost_compressed_cluster_sharing_its_host_cluster_with_live_streams_is_found_decoded_and_saved()
    {
        using var folder = new TempDirectory("unit", diskBacked: true);
        string image = CompressedImage(folder);
        RecoverFixture.WriteU64(image, L2Of(image, 0) + 5 * 8, 0); // the L2 update of guest cluster 5 was lost

        var report = await RecoverFixture.RecoverAsync(image, folder.File("out.qcow2"));

        string text = RecoveryReportFormatter.ToText(report);
        Assert.Equal(RecoveryExitCode.RecoveredWithLosses, report.ExitCode);
        Assert.Equal(1, report.CompressedStreamsFound);
        var lost = LostEntries(folder.File("out.qcow2"));
        var raw = File.ReadAllBytes(folder.File("out.qcow2.lost/clusters.raw"));
        var stream = Assert.Single(lost, e => e.GetProperty("kind").GetString() == "compressed-stream");
        long at = stream.GetProperty("offset-in-data-file").GetInt64();
        Assert.True(raw.AsSpan((int)at, 65536).IndexOfAnyExcept((byte)0x55) < 0, text); // guest cluster 5's data, decompressed
        Assert.Contains(5L * 65536, Candidates(stream)); // the gap between the streams of guest clusters 4 and 6
        // Every other cluster is in place.
        QemuTools.Bash(folder.Path, "qemu-io -f qcow2 out.qcow2 -c 'read -P 0x54 256k 64k' -c 'read -P 0x56 384k 64k' -c 'read -P 0 320k 64k' | grep -c '^read' | grep -q 3");
    }

    [Fact]
    public async Task Compressed_cluster_mapped_at_two_guest_offsets_is_placed_at_neither()
    {
        using var folder = new TempDirectory("unit", diskBacked: true);
        string image = CompressedImage(folder);
        long table = L2Of(image, 0);
        RecoverFixture.WriteU64(image, table + 9 * 8, RecoverFixture.ReadU64(image, table + 3 * 8)); // guest 9 now claims guest 3's stream

        var report = await RecoverFixture.RecoverAsync(image, folder.File("out.qcow2"));

        string text = RecoveryReportFormatter.ToText(report);
        RecoverFixture.AssertCheckClean(folder.File("out.qcow2"));
        QemuTools.Bash(folder.Path, "qemu-io -f qcow2 out.qcow2 -c 'read -P 0 192k 64k' -c 'read -P 0 576k 64k' -c 'read -P 0x52 128k 64k' | grep -c '^read' | grep -q 3");
        Assert.Equal(1, report.ConflictingClusters);
        var lost = LostEntries(folder.File("out.qcow2"));
        var raw = File.ReadAllBytes(folder.File("out.qcow2.lost/clusters.raw"));
        var conflict = Assert.Single(lost, e => e.GetProperty("kind").GetString() == "conflict");
        Assert.Equal([3L * 65536, 9L * 65536], Candidates(conflict));
        Assert.Equal(0x53, raw[conflict.GetProperty("offset-in-data-file").GetInt64()]);
        // Guest 9's own stream, orphaned by the bad entry, is found in the shared host cluster and saved decoded.
        var stream = Assert.Single(lost, e => e.GetProperty("kind").GetString() == "compressed-stream");
        Assert.Equal(0x59, raw[stream.GetProperty("offset-in-data-file").GetInt64()]);
        Assert.Equal(RecoveryExitCode.RecoveredWithLosses, report.ExitCode);
        Assert.Contains("CONFLICT", text);
    }

    [Fact]
    public async Task Old_L1_copy_spanning_several_clusters_never_places_a_table_at_the_slot_of_its_index_within_one_cluster()
    {
        using var folder = new TempDirectory("unit", diskBacked: true);
        QemuTools.Bash(folder.Path, """
            qemu-img create -q -f qcow2 -o cluster_size=4k img.qcow2 2G
            qemu-io -f qcow2 img.qcow2 -c 'write -P 0x71 0 8k' -c 'write -P 0x72 1600M 8k' >/dev/null
            """);
        string image = folder.File("img.qcow2");
        // 2 GiB of 4 KiB clusters: 1024 L1 entries in two clusters; 1600M is slot 800, entry 288 of the second cluster.
        RecoverFixture.WriteU64(image, 40, 1UL << 50); // the header's L1 offset is lost

        var report = await RecoverFixture.RecoverAsync(image, folder.File("out.qcow2"));

        string text = RecoveryReportFormatter.ToText(report);
        RecoverFixture.AssertCheckClean(folder.File("out.qcow2"));
        // Slot 288 (576 MiB) must not receive slot 800's data; nothing says where either table belongs.
        QemuTools.Bash(folder.Path, "qemu-io -f qcow2 out.qcow2 -c 'read -P 0 576M 8k' -c 'read -P 0 0 8k' | grep -c '^read' | grep -q 2");
        Assert.Equal(0, report.OrphanL2TablesPlaced);
        var lost = LostEntries(folder.File("out.qcow2"));
        var raw = File.ReadAllBytes(folder.File("out.qcow2.lost/clusters.raw"));
        Assert.Equal(2, lost.Count(e => e.GetProperty("kind").GetString() == "l2-data" && raw[e.GetProperty("offset-in-data-file").GetInt64()] == 0x72)); // saved, not placed
        Assert.Equal(RecoveryExitCode.RecoveredWithLosses, report.ExitCode);
    }

    [Theory]
    [InlineData("4k", 4096)]
    [InlineData("64k", 65536)]
    public async Task Garbage_cluster_bits_is_probed_from_L2_table_shapes_or_taken_from_cluster_size(string cluster, int clusterSize)
    {
        using var folder = new TempDirectory("unit", diskBacked: true);
        QemuTools.Bash(folder.Path, $"""
            qemu-img create -q -f qcow2 -o cluster_size={cluster} img.qcow2 64M
            qemu-io -f qcow2 img.qcow2 -c 'write -P 0x81 0 256k' -c 'write -P 0x82 40M 64k' >/dev/null
            cp img.qcow2 original.qcow2
            """);
        string image = folder.File("img.qcow2");
        RecoverFixture.WriteBytes(image, 20, [0, 0, 0, 0x33]); // cluster_bits = 51

        var probed = await RecoverFixture.RecoverAsync(image, folder.File("probed.qcow2"));
        var given = await RecoverFixture.RecoverAsync(image, folder.File("given.qcow2"), new RecoveryOptions { OutputPath = "", ClusterSize = clusterSize });

        Assert.Equal(clusterSize, probed.ClusterSize);
        Assert.Contains(probed.Findings, f => f.Kind == "header" && f.Message.Contains("probed"));
        Assert.True(RecoverFixture.Identical(folder.File("probed.qcow2"), folder.File("original.qcow2")), RecoveryReportFormatter.ToText(probed));
        Assert.True(RecoverFixture.Identical(folder.File("given.qcow2"), folder.File("original.qcow2")), RecoveryReportFormatter.ToText(given));
        Assert.Contains(given.Findings, f => f.Kind == "header" && f.Message.Contains("--cluster-size"));
        Assert.Equal(RecoveryExitCode.RecoveredCompletely, given.ExitCode);
    }

    [Fact]
    public async Task Lost_L1_offset_is_taken_from_l1_offset()
    {
        using var folder = new TempDirectory("unit", diskBacked: true);
        QemuTools.Bash(folder.Path, """
            qemu-img create -q -f qcow2 -o cluster_size=4k img.qcow2 2G
            qemu-io -f qcow2 img.qcow2 -c 'write -P 0x91 0 8k' -c 'write -P 0x92 1600M 8k' >/dev/null
            cp img.qcow2 original.qcow2
            """);
        string image = folder.File("img.qcow2");
        long l1 = RecoverFixture.L1TableOffset(image);
        RecoverFixture.WriteU64(image, 40, 0); // the L1 offset is lost; the L1 spans two clusters, so no copy evidence helps

        var report = await RecoverFixture.RecoverAsync(image, folder.File("out.qcow2"), new RecoveryOptions { OutputPath = "", L1Offset = l1 });

        Assert.True(RecoverFixture.Identical(folder.File("out.qcow2"), folder.File("original.qcow2")), RecoveryReportFormatter.ToText(report));
        Assert.Equal(RecoveryExitCode.RecoveredCompletely, report.ExitCode);
    }
}
