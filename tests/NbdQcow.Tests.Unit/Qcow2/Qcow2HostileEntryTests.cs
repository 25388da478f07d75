using System.Buffers.Binary;
using NbdQcow.HostIo;
using NbdQcow.Image;
using NbdQcow.Image.Qcow2;
using NbdQcow.Image.Qcow2.Format;
using NbdQcow.Tests.Unit.HostIo;

namespace NbdQcow.Tests.Unit.Qcow2;

/// <summary>
/// L2 entries aimed at metadata or past the end of the file, and damaged refcounts, in images qemu-img made and
/// this test patched: the request touching them fails with EIO, the image is marked corrupt, nothing else changes.
/// </summary>
public sealed class Qcow2HostileEntryTests : IDisposable
{
    private const int ClusterSize = 65536;
    private readonly TempDirectory _folder = new();

    public void Dispose() => _folder.Dispose();

    /// <summary>0x5a in guest [0, 128k), 0x5b in [8M, 8M+64k): two L2 entries in the first L2 table.</summary>
    private string MakeImage(string options = "")
    {
        QemuTools.Bash(_folder.Path, $"""
            qemu-img create -q -f qcow2 {options} img.qcow2 16M
            qemu-io -f qcow2 img.qcow2 -c "write -P 0x5a 0 128k" -c "write -P 0x5b 8M 64k" >/dev/null
            """);
        return _folder.File("img.qcow2");
    }

    private static Qcow2Header ReadHeader(string path)
    {
        using var file = HostFile.Open(path, new HostFileOptions(true, false));
        return Qcow2Header.Read(file);
    }

    private static ulong ReadU64(string path, long offset)
    {
        using var file = HostFile.Open(path, new HostFileOptions(true, false));
        return BigEndianTable.Read(file, offset, 1)[0];
    }

    private static void PatchU64(string path, long offset, ulong value)
    {
        var bytes = new byte[8];
        BinaryPrimitives.WriteUInt64BigEndian(bytes, value);
        using var stream = new FileStream(path, FileMode.Open, FileAccess.ReadWrite) { Position = offset };
        stream.Write(bytes);
    }

    private static long FirstL2Table(string path) =>
        (long)(ReadU64(path, (long)ReadHeader(path).L1TableOffset) & L1Entry.OffsetMask);

    private static long FirstRefcountBlock(string path) =>
        (long)(ReadU64(path, (long)ReadHeader(path).RefcountTableOffset) & L1Entry.OffsetMask);

    /// <summary>Host offset of the metadata a hostile entry aims at.</summary>
    private static long MetadataOffset(string path, string target) => target switch
    {
        "l1" => (long)ReadHeader(path).L1TableOffset,
        "l2" => FirstL2Table(path),
        "refcount-block" => FirstRefcountBlock(path),
        _ => throw new ArgumentException(target),
    };

    private static ulong CompressedEntry(long hostOffset, int length) =>
        L2Entry.CompressedFlag | CompressedClusterDescriptor.Encode(hostOffset, length, 16);

    private static byte[] FileBytes(string path, long offset, int length)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read) { Position = offset };
        var bytes = new byte[Math.Min(length, stream.Length - offset)];
        stream.ReadExactly(bytes);
        return bytes;
    }

    private static Qcow2Image OpenWritable(string path) =>
        Qcow2Image.Open(path, new ImageOpenOptions { MaxDirtyAge = null }, HostFile.Open);

    private static bool IsMarkedCorrupt(string path) =>
        (ReadHeader(path).IncompatibleFeatures & Qcow2IncompatibleFeatures.Corrupt) != 0;

    private static async Task AssertReads(IBlockDevice image, long offset, int length, byte pattern)
    {
        var buffer = new byte[length];
        await image.ReadAsync(offset, buffer);
        Assert.True(Array.TrueForAll(buffer, b => b == pattern), $"guest 0x{offset:x}+{length} does not read 0x{pattern:x2}");
    }

    /// <summary>Writes elsewhere, flushes, reads back: the rest of the export keeps working after a refused request.</summary>
    private static async Task AssertOtherClustersStillWork(IBlockDevice image)
    {
        await AssertReads(image, 8 << 20, ClusterSize, 0x5b);
        await image.WriteAsync(12 << 20, new byte[ClusterSize].Select(_ => (byte)0x6c).ToArray(), fua: false);
        await image.FlushAsync();
        await AssertReads(image, 12 << 20, ClusterSize, 0x6c);
    }

    [Theory]
    [InlineData("l1")]
    [InlineData("l2")]
    [InlineData("refcount-block")]
    public async Task Overwriting_a_compressed_entry_aimed_at_metadata_fails_with_eio_and_leaves_the_metadata_alone(string target)
    {
        string path = MakeImage();
        long metadata = MetadataOffset(path, target);
        // Guest cluster 1 (64k) claims to be compressed data stored in the metadata table.
        PatchU64(path, FirstL2Table(path) + 8, CompressedEntry(metadata, 4096));
        byte[] before = FileBytes(path, metadata, ClusterSize);

        await using (var image = OpenWritable(path))
        {
            var error = await Assert.ThrowsAsync<BlockDeviceException>(async () =>
                await image.WriteAsync(ClusterSize, new byte[ClusterSize].Select(_ => (byte)0x77).ToArray(), fua: false));
            Assert.Equal(BlockError.Io, error.Error);
            Assert.Contains("L2 entry", error.Message);
            Assert.Contains("metadata", error.Message);
            await AssertOtherClustersStillWork(image);
        }
        Assert.True(IsMarkedCorrupt(path));
        // The write at 12M legitimately changed the refcount block and L2 entry 192 (byte 1536); nothing before that.
        int unchanged = target switch { "l1" => ClusterSize, "l2" => 1536, _ => 0 };
        Assert.Equal(before[..unchanged], FileBytes(path, metadata, unchanged));
        await using var reopened = Qcow2Image.Open(path, new ImageOpenOptions { ReadOnly = true }, HostFile.Open);
        await AssertReads(reopened, 0, ClusterSize, 0x5a);
        await AssertReads(reopened, 12 << 20, ClusterSize, 0x6c);
    }

    [Fact]
    public async Task Trimming_a_zero_entry_whose_host_cluster_is_its_own_l2_table_fails_with_eio()
    {
        string path = MakeImage();
        long l2 = FirstL2Table(path);
        // Guest cluster 2 (128k): "reads as zero, preallocated at" the L2 table itself. Freeing it would free the table.
        PatchU64(path, l2 + 16, L2Entry.CopiedFlag | (ulong)l2 | L2Entry.ZeroFlag);
        await using (var image = OpenWritable(path))
        {
            var error = await Assert.ThrowsAsync<BlockDeviceException>(async () => await image.TrimAsync(2 * ClusterSize, ClusterSize, fua: false));
            Assert.Equal(BlockError.Io, error.Error);
            Assert.Contains("overlaps the image's metadata", error.Message);
            await AssertOtherClustersStillWork(image);
            await AssertReads(image, 0, 2 * ClusterSize, 0x5a);
        }
        Assert.True(IsMarkedCorrupt(path));
    }

    [Theory]
    [InlineData("standard")]
    [InlineData("compressed")]
    [InlineData("subclusters")]
    public async Task Reading_an_entry_aimed_at_the_l1_table_fails_with_eio(string kind)
    {
        string path = MakeImage(kind == "subclusters" ? "-o extended_l2=on" : "");
        long l1 = (long)ReadHeader(path).L1TableOffset;
        long l2 = FirstL2Table(path);
        switch (kind)
        {
            case "standard": PatchU64(path, l2, L2Entry.CopiedFlag | (ulong)l1); break;
            case "compressed": PatchU64(path, l2, CompressedEntry(l1, 512)); break;
            default:
                PatchU64(path, l2, L2Entry.CopiedFlag | (ulong)l1);
                PatchU64(path, l2 + 8, 0x0000_0000_0000_00ffUL); // subclusters 0-7 allocated
                break;
        }
        await using var image = OpenWritable(path);
        var error = await Assert.ThrowsAsync<BlockDeviceException>(async () => await image.ReadAsync(0, new byte[4096]));
        Assert.Equal(BlockError.Io, error.Error);
        Assert.Contains("overlaps the image's metadata", error.Message);
        await AssertReads(image, 8 << 20, ClusterSize, 0x5b);
    }

    [Theory]
    [InlineData(true, 4096)]
    [InlineData(false, 4096)]
    [InlineData(false, ClusterSize)]
    public async Task Writing_over_a_standard_entry_past_the_end_of_the_file_fails_with_eio(bool copied, int length)
    {
        string path = MakeImage();
        long beyond = (new FileInfo(path).Length + (1L << 30)) & ~(long)(ClusterSize - 1);
        PatchU64(path, FirstL2Table(path) + 8, (copied ? L2Entry.CopiedFlag : 0) | (ulong)beyond);
        long lengthBefore = new FileInfo(path).Length;
        await using (var image = OpenWritable(path))
        {
            var error = await Assert.ThrowsAsync<BlockDeviceException>(async () =>
                await image.WriteAsync(ClusterSize, new byte[length], fua: false));
            Assert.Equal(BlockError.Io, error.Error);
            Assert.Contains("past the end of the image", error.Message);
            await AssertOtherClustersStillWork(image);
        }
        Assert.True(IsMarkedCorrupt(path));
        Assert.True(new FileInfo(path).Length < lengthBefore + (1L << 20), "the refused write grew the file");
    }

    [Fact]
    public async Task Overwriting_a_compressed_entry_past_the_end_of_the_file_fails_and_later_writes_and_flushes_work()
    {
        string path = MakeImage();
        long beyond = (new FileInfo(path).Length + (1L << 30)) & ~(long)(ClusterSize - 1);
        PatchU64(path, FirstL2Table(path) + 8, CompressedEntry(beyond, 4096));
        await using (var image = OpenWritable(path))
        {
            var error = await Assert.ThrowsAsync<BlockDeviceException>(async () =>
                await image.WriteAsync(ClusterSize, new byte[ClusterSize], fua: false));
            Assert.Equal(BlockError.Io, error.Error);
            await AssertOtherClustersStillWork(image);
            await image.WriteAsync(13 << 20, new byte[4096], fua: false);
            await image.FlushAsync();
        }
        Assert.True(IsMarkedCorrupt(path));
    }

    [Theory]
    [InlineData("standard")]
    [InlineData("compressed")]
    public async Task Reading_an_entry_past_the_end_of_the_file_fails_with_eio_instead_of_returning_zeroes(string kind)
    {
        string path = MakeImage();
        long beyond = (new FileInfo(path).Length + (1L << 30)) & ~(long)(ClusterSize - 1);
        PatchU64(path, FirstL2Table(path) + 8, kind == "standard" ? L2Entry.CopiedFlag | (ulong)beyond : CompressedEntry(beyond, 512));
        await using var image = Qcow2Image.Open(path, new ImageOpenOptions { ReadOnly = true }, HostFile.Open);
        var error = await Assert.ThrowsAsync<BlockDeviceException>(async () => await image.ReadAsync(ClusterSize, new byte[4096]));
        Assert.Contains("past the end of the image", error.Message);
        await AssertReads(image, 0, ClusterSize, 0x5a);
    }

    [Fact]
    public async Task Zeroed_refcount_table_refuses_a_read_write_open_advising_a_repair()
    {
        string path = MakeImage();
        var header = ReadHeader(path);
        using (var stream = new FileStream(path, FileMode.Open, FileAccess.ReadWrite) { Position = (long)header.RefcountTableOffset })
            stream.Write(new byte[header.RefcountTableClusters * ClusterSize]);
        var error = Assert.Throws<Qcow2FormatException>(() => OpenWritable(path).DisposeAsync().AsTask().GetAwaiter().GetResult());
        Assert.Contains("refcount of the header cluster", error.Message);
        Assert.Contains("nbdqcow check --repair all", error.Message);
        await using var readOnly = Qcow2Image.Open(path, new ImageOpenOptions { ReadOnly = true }, HostFile.Open);
        await AssertReads(readOnly, 0, ClusterSize, 0x5a);
    }

    [Fact]
    public async Task Allocation_that_finds_metadata_counted_as_free_fails_with_eio_instead_of_overwriting_it()
    {
        string path = MakeImage();
        QemuTools.Run("qemu-img", "snapshot", "-c", "monday", path);
        var header = ReadHeader(path);
        long snapshots = (long)header.SnapshotsOffset;
        // The snapshot table's refcount (16-bit entries in the first block) says free: the next allocation finds it.
        long entry = FirstRefcountBlock(path) + (snapshots / ClusterSize) * 2;
        using (var stream = new FileStream(path, FileMode.Open, FileAccess.ReadWrite) { Position = entry })
            stream.Write(new byte[2]);
        byte[] before = FileBytes(path, snapshots, ClusterSize);
        await using (var image = OpenWritable(path))
        {
            var error = await Assert.ThrowsAsync<BlockDeviceException>(async () =>
                await image.WriteAsync(0, new byte[ClusterSize], fua: false));
            Assert.Equal(BlockError.Io, error.Error);
            Assert.Contains("check --repair all", error.Message);
        }
        Assert.Equal(before, FileBytes(path, snapshots, ClusterSize));
        Assert.True(IsMarkedCorrupt(path));
    }

    [Fact]
    public async Task An_entry_of_a_table_first_read_after_its_free_cluster_was_handed_out_fails_with_eio_instead_of_reading_that_data()
    {
        // Two L2 tables: guest [0, 128k) in the first, guest 600M in the second. The second table's entry for
        // 600M+64k names a hole the refcounts call free; a write through the first table gets that hole before the
        // second table is ever read, so the entry then names a cluster with refcount 1 holding guest 8M's data.
        QemuTools.Bash(_folder.Path, """
            qemu-img create -q -f qcow2 img.qcow2 1G
            qemu-io -f qcow2 img.qcow2 -c "write -P 0x5a 0 128k" -c "write -P 0x5b 600M 64k" >/dev/null
            """);
        string path = _folder.File("img.qcow2");
        var header = ReadHeader(path);
        long secondL2 = (long)(ReadU64(path, (long)header.L1TableOffset + 8) & L1Entry.OffsetMask);
        long hole = new FileInfo(path).Length;
        using (var stream = new FileStream(path, FileMode.Open, FileAccess.ReadWrite) { Position = hole })
            stream.Write(new byte[ClusterSize]);
        long guest = (600L << 20) + ClusterSize;
        PatchU64(path, secondL2 + (guest % (ClusterSize / 8 * (long)ClusterSize)) / ClusterSize * 8, L2Entry.CopiedFlag | (ulong)hole);
        var damage = new List<string>();
        await using (var image = Qcow2Image.Open(path, new ImageOpenOptions { MaxDirtyAge = null, DamageReport = damage.Add }, HostFile.Open))
        {
            await image.WriteAsync(8 << 20, new byte[ClusterSize].Select(_ => (byte)0x78).ToArray(), fua: false);
            var error = await Assert.ThrowsAsync<BlockDeviceException>(async () => await image.ReadAsync(guest, new byte[ClusterSize]));
            Assert.Equal(BlockError.Io, error.Error);
            Assert.Contains($"guest offset 0x{guest:x}", error.Message);
            await AssertReads(image, 8 << 20, ClusterSize, 0x78);
            await AssertReads(image, 600L << 20, ClusterSize, 0x5b);
            Assert.NotEmpty(damage);
        }
        Assert.True(IsMarkedCorrupt(path));
    }

    [Fact]
    public async Task A_far_cluster_a_damaged_entry_names_does_not_push_a_growing_refcount_table_past_it()
    {
        // 512-byte clusters: one refcount table cluster covers 8 MiB of file, so writing 12 MiB grows the table.
        QemuTools.Bash(_folder.Path, """
            qemu-img create -q -f qcow2 -o cluster_size=512 img.qcow2 64M
            qemu-io -f qcow2 img.qcow2 -c "write -P 0x5a 0 4k" >/dev/null
            """);
        string path = _folder.File("img.qcow2");
        var header = ReadHeader(path);
        long l2 = (long)(ReadU64(path, (long)header.L1TableOffset) & L1Entry.OffsetMask);
        // Guest cluster 1 names a cluster 1 GiB into a file of a few KiB: damage, and quarantined when its table is read.
        PatchU64(path, l2 + 8, L2Entry.CopiedFlag | (1UL << 30));
        var damage = new List<string>();
        await using (var image = Qcow2Image.Open(path, new ImageOpenOptions { MaxDirtyAge = null, DamageReport = damage.Add }, HostFile.Open))
        {
            // A write in the damaged entry's table reads it (the first write also passes the corrupt-bit check).
            await image.WriteAsync(1024, new byte[512], fua: false);
            await Assert.ThrowsAsync<BlockDeviceException>(async () => await image.ReadAsync(512, new byte[512]));
            var data = new byte[1 << 20];
            Array.Fill(data, (byte)0x6d);
            for (int i = 0; i < 12; i++)
                await image.WriteAsync((8L << 20) + ((long)i << 20), data, fua: false);
            await image.FlushAsync();
            await AssertReads(image, 19L << 20, 1 << 20, 0x6d);
        }
        Assert.NotEmpty(damage);
        Assert.True(new FileInfo(path).Length < 64L << 20, $"the file grew to {new FileInfo(path).Length} bytes");
    }

    [Fact]
    public async Task A_new_refcount_block_is_not_placed_on_a_cluster_a_damaged_entry_names()
    {
        // 512-byte clusters, 16-bit refcounts: a refcount block covers 128 KiB of file and a new one goes on the first
        // cluster of its range. Guest cluster 1 names host 256 KiB (range 2, no block yet, refcount 0).
        QemuTools.Bash(_folder.Path, """
            qemu-img create -q -f qcow2 -o cluster_size=512 img.qcow2 64M
            qemu-io -f qcow2 img.qcow2 -c "write -P 0x5a 0 4k" >/dev/null
            """);
        string path = _folder.File("img.qcow2");
        var header = ReadHeader(path);
        long l2 = (long)(ReadU64(path, (long)header.L1TableOffset) & L1Entry.OffsetMask);
        PatchU64(path, l2 + 8, L2Entry.CopiedFlag | (256UL << 10));
        await using (var image = Qcow2Image.Open(path, new ImageOpenOptions { MaxDirtyAge = null }, HostFile.Open))
        {
            await image.WriteAsync(1024, new byte[512], fua: false); // reads the damaged entry's table
            var data = new byte[512 << 10];
            Array.Fill(data, (byte)0x6d);
            await image.WriteAsync(8L << 20, data, fua: false);
            await image.FlushAsync();
        }
        // qemu-img sees the damage that was there (a reference without a refcount), not an entry naming a refcount block.
        var result = ToolRunner.Run("qemu-img", ["check", path], TimeSpan.FromSeconds(60));
        string check = result.Stdout + result.Stderr;
        Assert.Contains("refcount=0 reference=1", check);
        Assert.DoesNotContain("reference=2", check);
    }
}
