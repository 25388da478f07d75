using System.Buffers.Binary;
using NbdQcow.HostIo;
using NbdQcow.Image;
using NbdQcow.Image.Qcow2;
using NbdQcow.Image.Qcow2.Format;
using NbdQcow.Tests.Unit.HostIo;

namespace NbdQcow.Tests.Unit.Qcow2;

/// <summary>
/// Damaged and crafted images are refused with one message naming the field and its value: no crash, no hang,
/// and no large allocation driven by a crafted size.
/// </summary>
public sealed class Qcow2HostileImageTests : IDisposable
{
    private readonly TempDirectory _folder = new();

    public void Dispose() => _folder.Dispose();

    private string MakeImage(string name = "img.qcow2", string options = "", string size = "16M")
    {
        QemuTools.Bash(_folder.Path, $"""
            qemu-img create -q -f qcow2 {options} {name} {size}
            qemu-io -f qcow2 {name} -c "write -P 0x5a 0 128k" -c "write -P 0x5b 8M 64k" >/dev/null
            """);
        return _folder.File(name);
    }

    private static void Patch(string path, long offset, int width, ulong value)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.ReadWrite);
        var bytes = new byte[width];
        switch (width)
        {
            case 1: bytes[0] = (byte)value; break;
            case 2: BinaryPrimitives.WriteUInt16BigEndian(bytes, (ushort)value); break;
            case 4: BinaryPrimitives.WriteUInt32BigEndian(bytes, (uint)value); break;
            default: BinaryPrimitives.WriteUInt64BigEndian(bytes, value); break;
        }
        stream.Position = offset;
        stream.Write(bytes);
    }

    private static Qcow2Header ReadHeader(string path)
    {
        using var file = HostFile.Open(path, new HostFileOptions(true, false));
        return Qcow2Header.Read(file);
    }

    private static void RewriteHeader(string path, Qcow2Header header)
    {
        var bytes = header.Serialize();
        using var stream = new FileStream(path, FileMode.Open, FileAccess.ReadWrite);
        stream.Write(bytes);
    }

    /// <summary>Opens read-only expecting refusal; returns the message. Checks the attempt allocated little memory.</summary>
    private static string Refused(string path, string? snapshot = null)
    {
        long before = GC.GetAllocatedBytesForCurrentThread();
        var error = Assert.Throws<Qcow2FormatException>(() =>
        {
            var image = Qcow2Image.Open(path, new ImageOpenOptions { ReadOnly = true, Snapshot = snapshot, MaxDirtyAge = null }, HostFile.Open);
            image.DisposeAsync().AsTask().GetAwaiter().GetResult();
        });
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.True(allocated < 16L << 20, $"refusing the image allocated {allocated} bytes");
        return error.Message;
    }

    [Theory]
    [InlineData(4, 4, 4UL, "version = 4")]
    [InlineData(20, 4, 30UL, "cluster_bits = 30")]
    [InlineData(20, 4, 8UL, "cluster_bits = 8")]
    [InlineData(36, 4, 0xffffffffUL, "l1_size = 4294967295")]
    [InlineData(24, 8, 1UL << 63, "size = 9223372036854775808")]
    [InlineData(24, 8, 1UL << 40, "l1_size = 1: too small")]
    [InlineData(56, 4, 0x7fffffffUL, "refcount_table_clusters = 2147483647")]
    [InlineData(56, 4, 0UL, "refcount_table_clusters = 0")]
    [InlineData(60, 4, 0xffffffffUL, "nb_snapshots = 4294967295")]
    [InlineData(96, 4, 7UL, "refcount_order = 7")]
    [InlineData(100, 4, 7UL, "header_length = 7")]
    [InlineData(100, 4, 1UL << 20, "header_length = 1048576")]
    [InlineData(104, 1, 9UL, "compression_type = 9")]
    [InlineData(104, 1, 1UL, "compression_type = 1: non-zlib compression without")]
    [InlineData(32, 4, 1UL, "legacy AES")]
    [InlineData(32, 4, 2UL, "LUKS")]
    [InlineData(32, 4, 77UL, "crypt_method = 77")]
    [InlineData(72, 8, 1UL << 9, "unknown feature (bit 9)")]
    [InlineData(72, 8, 1UL << 2, "external data file")]
    [InlineData(16, 4, 5000UL, "backing_file_size = 5000")]
    [InlineData(0, 4, 0x514649faUL, "magic = \"0x514649fa\": not a qcow2 image")]
    public void Damaged_header_field_is_refused_naming_the_field(long offset, int width, ulong value, string expected)
    {
        string path = MakeImage();
        Patch(path, offset, width, value);
        Assert.Contains(expected, Refused(path));
    }

    [Fact]
    public void L1_table_past_end_of_file_is_refused()
    {
        string path = MakeImage();
        Patch(path, 40, 8, (ulong)new FileInfo(path).Length + (1 << 20));
        Assert.Contains("l1_table_offset", Refused(path));
    }

    [Fact]
    public void Unaligned_l1_table_is_refused()
    {
        string path = MakeImage();
        Patch(path, 40, 8, ReadHeader(path).L1TableOffset + 8);
        Assert.Contains("l1_table_offset", Refused(path));
    }

    [Fact]
    public void Refcount_table_overlapping_the_l1_table_is_refused()
    {
        string path = MakeImage();
        Patch(path, 48, 8, ReadHeader(path).L1TableOffset);
        Assert.Contains("overlaps", Refused(path));
    }

    [Fact]
    public void Truncated_file_is_refused()
    {
        string path = MakeImage();
        using (var stream = new FileStream(path, FileMode.Open)) stream.SetLength(50);
        Assert.Contains("file length = 50", Refused(path));
    }

    [Fact]
    public void Unknown_incompatible_bit_is_named_from_the_feature_name_table()
    {
        string path = MakeImage();
        var header = ReadHeader(path);
        header.FeatureNames.Add(new Qcow2FeatureName(Qcow2FeatureKind.Incompatible, 11, "frobnicated clusters"));
        header.IncompatibleFeatures |= (Qcow2IncompatibleFeatures)(1UL << 11);
        RewriteHeader(path, header);
        Assert.Contains("frobnicated clusters (bit 11)", Refused(path));
    }

    [Fact]
    public async Task Old_v2_image_with_the_backing_name_right_after_the_header_and_no_extensions_opens()
    {
        QemuTools.Bash(_folder.Path, """
            qemu-img create -q -f qcow2 -o compat=0.10 base.qcow2 4M; qemu-io -f qcow2 base.qcow2 -c "write -P 0x31 0 1M" >/dev/null
            qemu-img create -q -f qcow2 -o compat=0.10 -b base.qcow2 -F qcow2 img.qcow2
            qemu-io -f qcow2 img.qcow2 -c "write -P 0x32 512k 4k" >/dev/null
            """);
        string path = _folder.File("img.qcow2");
        // What qemu 0.9 wrote: no extensions, the backing file name at offset 72.
        using (var stream = new FileStream(path, FileMode.Open, FileAccess.ReadWrite))
        {
            stream.Position = 72;
            stream.Write(new byte[512]);
            stream.Position = 72;
            stream.Write("base.qcow2"u8);
        }
        Patch(path, 8, 8, 72);
        Patch(path, 16, 4, 10);
        await using var image = Qcow2Image.Open(path, new ImageOpenOptions { ReadOnly = true }, HostFile.Open);
        Assert.Equal("qcow2", image.BackingFormat);
        var buffer = new byte[8192];
        await image.ReadAsync(512 * 1024 - 4096, buffer);
        Assert.All(buffer.AsSpan(0, 4096).ToArray(), b => Assert.Equal(0x31, b));
        Assert.All(buffer.AsSpan(4096).ToArray(), b => Assert.Equal(0x32, b));
    }

    [Fact]
    public void Header_extension_running_past_the_cluster_is_refused()
    {
        string path = MakeImage();
        // The first extension follows the 112-byte header: its length field is at 116.
        Patch(path, 116, 4, 0xfffffff0UL);
        Assert.Contains("runs past the end of the header area", Refused(path));
    }

    [Fact]
    public async Task L1_entry_pointing_past_end_of_file_refuses_a_writable_open_and_fails_only_its_range_read_only()
    {
        string path = MakeImage();
        Patch(path, (long)ReadHeader(path).L1TableOffset, 8, 0x8000_0000_0000_0000UL | (1UL << 40));
        await AssertL1EntryZeroDamaged(path, "L1 entry 0 L2 table offset");
    }

    [Fact]
    public async Task L1_entry_with_reserved_bits_refuses_a_writable_open_and_fails_only_its_range_read_only()
    {
        string path = MakeImage();
        long l1 = (long)ReadHeader(path).L1TableOffset;
        Patch(path, l1 + 7, 1, 0x01); // bit 0 of the first entry is reserved
        await AssertL1EntryZeroDamaged(path, "L1 entry 0");
    }

    private static async Task AssertL1EntryZeroDamaged(string path, string field)
    {
        var refused = Assert.Throws<Qcow2FormatException>(() =>
            Qcow2Image.Open(path, new ImageOpenOptions { MaxDirtyAge = null }, HostFile.Open).DisposeAsync().AsTask().GetAwaiter().GetResult());
        Assert.Contains(field, refused.Message);
        Assert.Contains("--read-only", refused.Message);
        var damage = new List<string>();
        await using var image = Qcow2Image.Open(path, new ImageOpenOptions { ReadOnly = true, DamageReport = damage.Add }, HostFile.Open);
        var error = await Assert.ThrowsAsync<BlockDeviceException>(async () => await image.ReadAsync(0, new byte[4096]));
        Assert.Equal(BlockError.Io, error.Error);
        Assert.Contains(field, error.Message);
        Assert.Contains(field, Assert.Single(damage));
    }

    [Fact]
    public void Encrypted_luks_image_made_by_qemu_img_without_its_key_is_refused_asking_for_the_key()
    {
        QemuTools.CreateLuksImage(_folder.Path, "enc.qcow2", "16M");
        var error = Assert.Throws<NbdQcow.Image.Luks.EncryptionKeyException>(() =>
            Qcow2Image.Open(_folder.File("enc.qcow2"), new ImageOpenOptions { ReadOnly = true, MaxDirtyAge = null }, HostFile.Open));
        Assert.Contains("LUKS aes-xts-plain64", error.Message);
        Assert.Contains("--key-file", error.Message);
    }

    [Fact]
    public void Backing_chain_loop_is_refused()
    {
        QemuTools.Bash(_folder.Path, """
            qemu-img create -q -f qcow2 a.qcow2 1M
            qemu-img create -q -f qcow2 -b a.qcow2 -F qcow2 b.qcow2
            qemu-img rebase -q -u -f qcow2 -b b.qcow2 -F qcow2 a.qcow2
            """);
        Assert.Contains("loops", Refused(_folder.File("b.qcow2")));
    }

    [Fact]
    public void Missing_backing_file_is_refused_naming_it()
    {
        QemuTools.Bash(_folder.Path, "qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 -o size=1M img.qcow2 2>/dev/null || qemu-img create -q -f qcow2 -u -b base.qcow2 -F qcow2 img.qcow2 1M");
        Assert.Contains("backing file = \"base.qcow2\": not found", Refused(_folder.File("img.qcow2")));
    }

    [Fact]
    public void Backing_chain_deeper_than_the_limit_is_refused()
    {
        QemuTools.Bash(_folder.Path, $$"""
            qemu-img create -q -f qcow2 l0.qcow2 1M
            for i in $(seq 1 {{Qcow2Image.MaxBackingChainDepth + 1}}); do qemu-img create -q -f qcow2 -u -b l$((i-1)).qcow2 -F qcow2 l$i.qcow2 1M; done
            """);
        Assert.Contains("deeper than", Refused(_folder.File($"l{Qcow2Image.MaxBackingChainDepth + 1}.qcow2")));
    }

    [Fact]
    public void Raw_backing_file_without_recorded_format_is_not_probed()
    {
        QemuTools.Bash(_folder.Path, "qemu-img create -q -f raw base.raw 1M; qemu-img create -q -f qcow2 -b base.raw -F raw img.qcow2");
        string path = _folder.File("img.qcow2");
        var header = ReadHeader(path);
        header.BackingFormat = null;
        RewriteHeader(path, header);
        Assert.Contains("refusing to probe", Refused(path));
    }

    [Fact]
    public void Unknown_backing_format_is_refused_naming_it()
    {
        QemuTools.Bash(_folder.Path, "qemu-img create -q -f raw base.raw 1M; qemu-img create -q -f qcow2 -b base.raw -F raw img.qcow2");
        string path = _folder.File("img.qcow2");
        var header = ReadHeader(path);
        header.BackingFormat = "vmdk";
        RewriteHeader(path, header);
        Assert.Contains("backing format = \"vmdk\"", Refused(path));
    }

    [Fact]
    public void Unknown_snapshot_name_is_refused_listing_the_snapshots()
    {
        string path = MakeImage();
        QemuTools.Run("qemu-img", "snapshot", "-c", "monday", path);
        Assert.Contains("have: monday", Refused(path, "tuesday"));
    }

    [Fact]
    public void Snapshot_l1_table_past_end_of_file_is_refused()
    {
        string path = MakeImage();
        QemuTools.Run("qemu-img", "snapshot", "-c", "monday", path);
        Patch(path, (long)ReadHeader(path).SnapshotsOffset, 8, 1UL << 40);
        Assert.Contains("snapshot \"monday\" l1_table_offset", Refused(path, "monday"));
    }

    [Fact]
    public void Bitmap_directory_past_end_of_file_is_refused()
    {
        string path = MakeImage();
        QemuTools.Run("qemu-img", "bitmap", "--add", path, "b0");
        var header = ReadHeader(path);
        header.Bitmaps = header.Bitmaps! with { DirectoryOffset = 1UL << 40 };
        RewriteHeader(path, header);
        Assert.Contains("bitmap_directory_offset", Refused(path));
    }

    private async Task<BlockDeviceException> ReadFails(string path, long offset)
    {
        await using var image = Qcow2Image.Open(path, new ImageOpenOptions { ReadOnly = true, MaxDirtyAge = null }, HostFile.Open);
        return await Assert.ThrowsAsync<BlockDeviceException>(async () => await image.ReadAsync(offset, new byte[4096]));
    }

    private static long FirstL2Table(string path)
    {
        var header = ReadHeader(path);
        using var file = HostFile.Open(path, new HostFileOptions(true, false));
        return (long)(BigEndianTable.Read(file, (long)header.L1TableOffset, 1)[0] & L1Entry.OffsetMask);
    }

    [Fact]
    public async Task L2_entry_with_reserved_bits_fails_the_read_naming_the_entry()
    {
        string path = MakeImage();
        Patch(path, FirstL2Table(path) + 6, 1, 0x01); // bit 8 of entry 0: reserved
        var error = await ReadFails(path, 0);
        Assert.Contains("L2 entry", error.Message);
        Assert.Contains("reserved bits", error.Message);
    }

    [Fact]
    public async Task Unaligned_l2_data_offset_fails_the_read()
    {
        string path = MakeImage();
        long l2 = FirstL2Table(path);
        Patch(path, l2, 8, 0x8000_0000_0005_0200UL);
        var error = await ReadFails(path, 0);
        Assert.Contains("not aligned", error.Message);
    }

    [Fact]
    public async Task Corrupt_compressed_cluster_fails_the_read_instead_of_returning_garbage()
    {
        QemuTools.Bash(_folder.Path, """
            qemu-img create -q -f raw src.raw 1M; qemu-io -f raw src.raw -c "write -P 0x42 0 1M" >/dev/null
            qemu-img convert -c -O qcow2 src.raw img.qcow2
            """);
        string path = _folder.File("img.qcow2");
        long l2 = FirstL2Table(path);
        using (var file = HostFile.Open(path, new HostFileOptions(true, false)))
        {
            var entry = new L2Entry(BigEndianTable.Read(file, l2, 1)[0]);
            Assert.True(entry.IsCompressed);
            var descriptor = entry.Compressed(16);
            var garbage = new byte[descriptor.CompressedLength];
            new Random(7).NextBytes(garbage);
            using var stream = new FileStream(path, FileMode.Open, FileAccess.ReadWrite) { Position = descriptor.HostOffset };
            stream.Write(garbage);
        }
        var error = await ReadFails(path, 0);
        Assert.Contains("does not decompress", error.Message);
    }

    [Fact]
    public async Task Corrupt_bit_refuses_read_write_open_but_allows_read_only()
    {
        string path = MakeImage();
        Patch(path, 72, 8, 1UL << 1);
        var error = Assert.Throws<Qcow2FormatException>(() => Qcow2Image.Open(path, new ImageOpenOptions { MaxDirtyAge = null }, HostFile.Open));
        Assert.Contains("corrupt", error.Message);
        await using var image = Qcow2Image.Open(path, new ImageOpenOptions { ReadOnly = true }, HostFile.Open);
        var buffer = new byte[4096];
        await image.ReadAsync(0, buffer);
        Assert.All(buffer, b => Assert.Equal(0x5a, b));
    }

    [Fact]
    public async Task A_bitmap_table_lying_on_the_l1_table_refuses_a_read_write_open_and_leaves_the_file_alone()
    {
        string path = MakeImage();
        QemuTools.Run("qemu-img", "bitmap", "--add", path, "b0");
        using (var image = HostFile.Open(path, new HostFileOptions(true, false)))
        {
            var header = Qcow2Header.Read(image);
            // The directory entry starts with the bitmap table's offset: aim it at the L1 table.
            Patch(path, (long)header.Bitmaps!.DirectoryOffset, 8, header.L1TableOffset);
        }
        byte[] before = File.ReadAllBytes(path);
        var error = Assert.Throws<Qcow2FormatException>(() =>
            Qcow2Image.Open(path, new ImageOpenOptions { MaxDirtyAge = null }, HostFile.Open).DisposeAsync().AsTask().GetAwaiter().GetResult());
        Assert.Contains("table of bitmap \"b0\"", error.Message);
        Assert.Contains("overlaps the L1 table", error.Message);
        Assert.Equal(before, File.ReadAllBytes(path));
        await using var readOnly = Qcow2Image.Open(path, new ImageOpenOptions { ReadOnly = true }, HostFile.Open);
        Assert.Equal(16L << 20, readOnly.Size);
    }
}
