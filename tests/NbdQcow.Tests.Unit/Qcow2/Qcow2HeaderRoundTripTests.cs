using NbdQcow.HostIo;
using NbdQcow.Image.Qcow2.Format;
using NbdQcow.Tests.Unit.HostIo;

namespace NbdQcow.Tests.Unit.Qcow2;

/// <summary>
/// A header parsed from a qemu-img image and serialised again describes the same image: qemu-img check finds no
/// error and qemu-img compare finds the guest data identical, and parsing the result gives the same fields.
/// </summary>
public sealed class Qcow2HeaderRoundTripTests
{
    [Theory]
    [InlineData("-o compat=0.10")]
    [InlineData("-o cluster_size=512,refcount_bits=1")]
    [InlineData("-o extended_l2=on,compression_type=zstd,lazy_refcounts=on")]
    [InlineData("-b base.qcow2 -F qcow2")]
    [InlineData("-o data_file=data.raw,data_file_raw=on")]
    public void Serialised_header_keeps_the_image_identical_for_qemu(string options)
    {
        using var folder = new TempDirectory("unit", diskBacked: true);
        QemuTools.Bash(folder.Path, $"""
            qemu-img create -q -f qcow2 base.qcow2 8M; qemu-io -f qcow2 base.qcow2 -c "write -P 7 0 1M" >/dev/null
            qemu-img create -q -f qcow2 {options} img.qcow2 8M
            qemu-io -f qcow2 img.qcow2 -c "write -P 9 512k 1M" >/dev/null
            if qemu-img info img.qcow2 | grep -q "compat: 1.1"; then qemu-img bitmap --add img.qcow2 bm; fi
            cp img.qcow2 orig.qcow2
            """);
        string path = folder.File("img.qcow2");
        Qcow2Header original;
        using (var file = HostFile.Open(path, new HostFileOptions(false, false)))
        {
            original = Qcow2Header.Read(file);
            var copy = original.Clone();
            file.Write(0, copy.Serialize());
        }
        QemuTools.RunIn(folder.Path, "qemu-img", "check", "img.qcow2");
        QemuTools.RunIn(folder.Path, "qemu-img", "compare", "img.qcow2", "orig.qcow2");

        using var reread = HostFile.Open(path, new HostFileOptions(true, false));
        var again = Qcow2Header.Read(reread);
        Assert.Equal(original.Version, again.Version);
        Assert.Equal(original.Size, again.Size);
        Assert.Equal(original.ClusterBits, again.ClusterBits);
        Assert.Equal(original.L1TableOffset, again.L1TableOffset);
        Assert.Equal(original.L1Size, again.L1Size);
        Assert.Equal(original.RefcountTableOffset, again.RefcountTableOffset);
        Assert.Equal(original.RefcountTableClusters, again.RefcountTableClusters);
        Assert.Equal(original.IncompatibleFeatures, again.IncompatibleFeatures);
        Assert.Equal(original.CompatibleFeatures, again.CompatibleFeatures);
        Assert.Equal(original.AutoclearFeatures, again.AutoclearFeatures);
        Assert.Equal(original.RefcountOrder, again.RefcountOrder);
        Assert.Equal(original.CompressionType, again.CompressionType);
        Assert.Equal(original.BackingFileName, again.BackingFileName);
        Assert.Equal(original.BackingFormat, again.BackingFormat);
        Assert.Equal(original.ExternalDataFile, again.ExternalDataFile);
        Assert.Equal(original.Bitmaps, again.Bitmaps);
        Assert.Equal(original.FeatureNames, again.FeatureNames);
        Assert.Equal(original.UnknownExtensions.Count, again.UnknownExtensions.Count);
    }

    [Fact]
    public void Unknown_header_extension_is_kept_byte_for_byte()
    {
        using var folder = new TempDirectory("unit", diskBacked: true);
        QemuTools.Bash(folder.Path, "qemu-img create -q -f qcow2 img.qcow2 1M");
        string path = folder.File("img.qcow2");
        using var file = HostFile.Open(path, new HostFileOptions(false, false));
        var header = Qcow2Header.Read(file);
        header.UnknownExtensions.Add(new Qcow2HeaderExtension(0x12345678, [1, 2, 3, 4, 5]));
        file.Write(0, header.Serialize());
        var again = Qcow2Header.Read(file);
        var extension = Assert.Single(again.UnknownExtensions);
        Assert.Equal(0x12345678u, extension.Type);
        Assert.Equal([1, 2, 3, 4, 5], extension.Data);
        QemuTools.Run("qemu-img", "check", path);
    }
}

/// <summary>The compressed-cluster descriptor layout depends on cluster_bits; encode and decode agree with it.</summary>
public sealed class CompressedClusterDescriptorTests
{
    [Theory]
    [InlineData(9, 12345L, 300)]
    [InlineData(16, 0x1234567L, 40000)]
    [InlineData(16, 0x200L, 1)]
    [InlineData(21, 0x7654321L, 3 << 20)]
    public void Encoded_descriptor_decodes_to_a_range_covering_the_data(int clusterBits, long offset, int length)
    {
        ulong raw = CompressedClusterDescriptor.Encode(offset, length, clusterBits);
        var decoded = CompressedClusterDescriptor.Decode(raw | L2Entry.CompressedFlag, clusterBits);
        Assert.Equal(offset, decoded.HostOffset);
        Assert.True(decoded.CompressedLength >= length);
        Assert.True(decoded.CompressedLength < length + 512);
        Assert.Equal(0, (offset + decoded.CompressedLength) % 512);
    }
}

/// <summary>Refcount blocks of every width read back what was written, without touching neighbours.</summary>
public sealed class RefcountBlockCodecTests
{
    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    [InlineData(5)]
    [InlineData(6)]
    public void Every_width_round_trips_and_keeps_neighbours(int order)
    {
        var block = new byte[512];
        int entries = 512 * 8 >> order;
        ulong max = RefcountBlockCodec.MaxValue(order);
        var random = new Random(order);
        var expected = new ulong[entries];
        for (int i = 0; i < entries; i++)
        {
            expected[i] = (ulong)random.NextInt64() & max;
            RefcountBlockCodec.Set(block, i, order, expected[i]);
        }
        for (int i = 0; i < entries; i++)
            Assert.Equal(expected[i], RefcountBlockCodec.Get(block, i, order));
        if (order < 6)
            Assert.Throws<ArgumentOutOfRangeException>(() => RefcountBlockCodec.Set(block, 0, order, max + 1));
    }
}
