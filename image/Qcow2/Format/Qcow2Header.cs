using System.Buffers.Binary;
using System.Text;
using NbdQcow.HostIo;

namespace NbdQcow.Image.Qcow2.Format;

/// <summary>
/// The qcow2 header (v2 and v3) with its extensions and backing file name: parsed from, and serialised back
/// to, the first cluster of the image. Unknown header fields and unknown extensions are kept byte for byte.
/// Parsing checks every field that does not depend on the file size; <see cref="Qcow2HeaderValidator"/>
/// checks the tables against the file.
/// </summary>
public sealed class Qcow2Header
{
    public const uint Magic = 0x514649fb; // "QFI\xfb"
    public const int V2HeaderLength = 72;
    public const int V3MinimumHeaderLength = 104;
    /// <summary>Header length qemu writes for v3 (includes compression_type and padding).</summary>
    public const int V3HeaderLength = 112;
    public const int MinClusterBits = 9;
    public const int MaxClusterBits = 21;
    /// <summary>qemu refuses longer backing file names (1023 bytes).</summary>
    public const int MaxBackingFileNameLength = 1023;
    /// <summary>refcount_order 6 = 64-bit refcounts, the widest the spec allows.</summary>
    public const int MaxRefcountOrder = 6;

    public uint Version { get; set; } = 3;
    public ulong BackingFileOffset { get; set; }
    public uint BackingFileSize { get; set; }
    public int ClusterBits { get; set; } = 16;
    /// <summary>Virtual disk size in bytes.</summary>
    public ulong Size { get; set; }
    public Qcow2EncryptionMethod EncryptionMethod { get; set; }
    public uint L1Size { get; set; }
    public ulong L1TableOffset { get; set; }
    public ulong RefcountTableOffset { get; set; }
    public uint RefcountTableClusters { get; set; }
    public uint SnapshotCount { get; set; }
    public ulong SnapshotsOffset { get; set; }
    public Qcow2IncompatibleFeatures IncompatibleFeatures { get; set; }
    public Qcow2CompatibleFeatures CompatibleFeatures { get; set; }
    public Qcow2AutoclearFeatures AutoclearFeatures { get; set; }
    public int RefcountOrder { get; set; } = 4;
    /// <summary>v3 header_length as read (serialisation recomputes it).</summary>
    public uint HeaderLength { get; set; } = V3HeaderLength;
    public Qcow2CompressionType CompressionType { get; set; }
    /// <summary>Header bytes past the fields this implementation knows (header_length &gt; 112), kept as is.</summary>
    public byte[] UnknownHeaderFields { get; set; } = [];

    public string? BackingFileName { get; set; }
    /// <summary>Backing file format from the backing-format extension ("qcow2", "raw", ...), or null.</summary>
    public string? BackingFormat { get; set; }
    public List<Qcow2FeatureName> FeatureNames { get; set; } = [];
    public Qcow2BitmapsExtension? Bitmaps { get; set; }
    /// <summary>External data file name (extension 0x44415441), or null.</summary>
    public string? ExternalDataFile { get; set; }
    /// <summary>Extensions not interpreted here (including the encryption header pointer), in file order.</summary>
    public List<Qcow2HeaderExtension> UnknownExtensions { get; set; } = [];

    public int ClusterSize => 1 << ClusterBits;
    public int RefcountBits => 1 << RefcountOrder;
    public bool HasExtendedL2 => (IncompatibleFeatures & Qcow2IncompatibleFeatures.ExtendedL2) != 0;
    public bool HasExternalDataFile => (IncompatibleFeatures & Qcow2IncompatibleFeatures.ExternalDataFile) != 0;

    /// <summary>Incompatible bits this implementation understands.</summary>
    public const Qcow2IncompatibleFeatures KnownIncompatibleFeatures =
        Qcow2IncompatibleFeatures.Dirty | Qcow2IncompatibleFeatures.Corrupt | Qcow2IncompatibleFeatures.ExternalDataFile
        | Qcow2IncompatibleFeatures.CompressionType | Qcow2IncompatibleFeatures.ExtendedL2 | Qcow2IncompatibleFeatures.NbdqcowJournal;

    public const Qcow2AutoclearFeatures KnownAutoclearFeatures = Qcow2AutoclearFeatures.Bitmaps | Qcow2AutoclearFeatures.DataFileRaw;

    /// <summary>Reads and parses the header from the start of <paramref name="file"/>.</summary>
    public static Qcow2Header Read(IHostFile file)
    {
        long length = file.Length;
        if (length < V2HeaderLength)
            throw new Qcow2FormatException("file length", length, $"too short for a qcow2 header ({V2HeaderLength} bytes)");
        Span<byte> fixedPart = stackalloc byte[V2HeaderLength];
        file.Read(0, fixedPart);
        int clusterBits = ReadClusterBits(fixedPart);
        // Header, extensions and backing file name all live in the first cluster (at most 2 MiB).
        var cluster = new byte[1 << clusterBits];
        file.Read(0, cluster);
        return Parse(cluster);
    }

    private static int ReadClusterBits(ReadOnlySpan<byte> data)
    {
        uint magic = BinaryPrimitives.ReadUInt32BigEndian(data);
        if (magic != Magic)
            throw new Qcow2FormatException("magic", $"0x{magic:x8}", "not a qcow2 image (expected 0x514649fb)");
        uint clusterBits = BinaryPrimitives.ReadUInt32BigEndian(data[20..]);
        if (clusterBits is < MinClusterBits or > MaxClusterBits)
            throw new Qcow2FormatException("cluster_bits", clusterBits, $"must be {MinClusterBits}..{MaxClusterBits} (512 B to 2 MiB clusters)");
        return (int)clusterBits;
    }

    /// <summary>Parses a header from the first cluster of an image (bytes past the file end must be zero).</summary>
    public static Qcow2Header Parse(ReadOnlySpan<byte> firstCluster)
    {
        if (firstCluster.Length < V2HeaderLength)
            throw new Qcow2FormatException("header", firstCluster.Length, "truncated");
        int clusterBits = ReadClusterBits(firstCluster);
        int clusterSize = 1 << clusterBits;
        if (firstCluster.Length < clusterSize)
            throw new Qcow2FormatException("header", firstCluster.Length, $"parse needs the whole first cluster ({clusterSize} bytes)");
        firstCluster = firstCluster[..clusterSize];

        var h = new Qcow2Header
        {
            Version = BinaryPrimitives.ReadUInt32BigEndian(firstCluster[4..]),
            BackingFileOffset = BinaryPrimitives.ReadUInt64BigEndian(firstCluster[8..]),
            BackingFileSize = BinaryPrimitives.ReadUInt32BigEndian(firstCluster[16..]),
            ClusterBits = clusterBits,
            Size = BinaryPrimitives.ReadUInt64BigEndian(firstCluster[24..]),
            EncryptionMethod = (Qcow2EncryptionMethod)BinaryPrimitives.ReadUInt32BigEndian(firstCluster[32..]),
            L1Size = BinaryPrimitives.ReadUInt32BigEndian(firstCluster[36..]),
            L1TableOffset = BinaryPrimitives.ReadUInt64BigEndian(firstCluster[40..]),
            RefcountTableOffset = BinaryPrimitives.ReadUInt64BigEndian(firstCluster[48..]),
            RefcountTableClusters = BinaryPrimitives.ReadUInt32BigEndian(firstCluster[56..]),
            SnapshotCount = BinaryPrimitives.ReadUInt32BigEndian(firstCluster[60..]),
            SnapshotsOffset = BinaryPrimitives.ReadUInt64BigEndian(firstCluster[64..]),
        };
        if (h.Version is not (2 or 3))
            throw new Qcow2FormatException("version", h.Version, "only qcow2 versions 2 and 3 are supported");

        int extensionsStart;
        if (h.Version == 2)
        {
            h.RefcountOrder = 4;
            h.HeaderLength = V2HeaderLength;
            extensionsStart = V2HeaderLength;
        }
        else
        {
            h.IncompatibleFeatures = (Qcow2IncompatibleFeatures)BinaryPrimitives.ReadUInt64BigEndian(firstCluster[72..]);
            h.CompatibleFeatures = (Qcow2CompatibleFeatures)BinaryPrimitives.ReadUInt64BigEndian(firstCluster[80..]);
            h.AutoclearFeatures = (Qcow2AutoclearFeatures)BinaryPrimitives.ReadUInt64BigEndian(firstCluster[88..]);
            uint refcountOrder = BinaryPrimitives.ReadUInt32BigEndian(firstCluster[96..]);
            if (refcountOrder > MaxRefcountOrder)
                throw new Qcow2FormatException("refcount_order", refcountOrder, "must be 0..6 (1 to 64-bit refcounts)");
            h.RefcountOrder = (int)refcountOrder;
            h.HeaderLength = BinaryPrimitives.ReadUInt32BigEndian(firstCluster[100..]);
            if (h.HeaderLength < V3MinimumHeaderLength || h.HeaderLength > clusterSize)
                throw new Qcow2FormatException("header_length", h.HeaderLength, $"must be {V3MinimumHeaderLength}..{clusterSize} (the cluster size)");
            if (h.HeaderLength % 8 != 0)
                throw new Qcow2FormatException("header_length", h.HeaderLength, "must be a multiple of 8");
            if (h.HeaderLength > 104)
            {
                byte compression = firstCluster[104];
                if (compression > (byte)Qcow2CompressionType.Zstd)
                    throw new Qcow2FormatException("compression_type", compression, "unknown compression type (0 = zlib, 1 = zstd)");
                h.CompressionType = (Qcow2CompressionType)compression;
            }
            if ((h.IncompatibleFeatures & Qcow2IncompatibleFeatures.CompressionType) == 0 && h.CompressionType != Qcow2CompressionType.Zlib)
                throw new Qcow2FormatException("compression_type", (byte)h.CompressionType, "non-zlib compression without the compression type incompatible bit");
            if (h.HeaderLength > V3HeaderLength)
                h.UnknownHeaderFields = firstCluster[V3HeaderLength..(int)h.HeaderLength].ToArray();
            extensionsStart = (int)h.HeaderLength;
        }

        if (h.BackingFileOffset != 0)
        {
            if (h.BackingFileSize > MaxBackingFileNameLength)
                throw new Qcow2FormatException("backing_file_size", h.BackingFileSize, $"backing file name longer than {MaxBackingFileNameLength} bytes");
            if (h.BackingFileOffset < (ulong)extensionsStart || h.BackingFileOffset + h.BackingFileSize > (ulong)clusterSize)
                throw new Qcow2FormatException("backing_file_offset", h.BackingFileOffset, "backing file name must lie in the first cluster, after the header");
            h.BackingFileName = DecodeString(firstCluster.Slice((int)h.BackingFileOffset, (int)h.BackingFileSize), "backing file name");
        }
        else if (h.BackingFileSize != 0)
        {
            throw new Qcow2FormatException("backing_file_size", h.BackingFileSize, "non-zero without a backing file offset");
        }

        // Extensions end at the backing file name (if it comes first) or the cluster end.
        int extensionsEnd = h.BackingFileOffset != 0 ? (int)h.BackingFileOffset : clusterSize;
        h.ParseExtensions(firstCluster[..extensionsEnd], extensionsStart);

        if (h.HasExternalDataFile && h.ExternalDataFile is null)
            throw new Qcow2FormatException("incompatible_features", "external data file", "bit set but no external data file name extension");
        return h;
    }

    private void ParseExtensions(ReadOnlySpan<byte> area, int offset)
    {
        var seen = new HashSet<uint>();
        while (true)
        {
            // As in qemu, an extension area that ends exactly where the backing file name starts needs no end marker
            // (old v2 images put the name right after the header).
            if (offset >= area.Length)
                return;
            if (offset + 8 > area.Length)
                throw new Qcow2FormatException("header extension", $"at offset {offset}", "extension list runs past the end of the header area (no end marker)");
            uint type = BinaryPrimitives.ReadUInt32BigEndian(area[offset..]);
            uint length = BinaryPrimitives.ReadUInt32BigEndian(area[(offset + 4)..]);
            offset += 8;
            if (type == Qcow2HeaderExtensionType.End)
                return;
            if (length > (uint)(area.Length - offset))
                throw new Qcow2FormatException($"header extension 0x{type:x8} length", length, "runs past the end of the header area");
            var data = area.Slice(offset, (int)length);
            offset += (int)((length + 7) & ~7u);
            if (type != Qcow2HeaderExtensionType.FeatureNameTable && !seen.Add(type))
                throw new Qcow2FormatException("header extension", $"0x{type:x8}", "appears twice");
            switch (type)
            {
                case Qcow2HeaderExtensionType.BackingFormat:
                    BackingFormat = DecodeString(data, "backing format");
                    break;
                case Qcow2HeaderExtensionType.ExternalDataFile:
                    ExternalDataFile = DecodeString(data, "external data file name");
                    break;
                case Qcow2HeaderExtensionType.FeatureNameTable:
                    for (int i = 0; i + Qcow2FeatureName.EntrySize <= data.Length; i += Qcow2FeatureName.EntrySize)
                    {
                        var entry = data.Slice(i, Qcow2FeatureName.EntrySize);
                        FeatureNames.Add(new Qcow2FeatureName((Qcow2FeatureKind)entry[0], entry[1], DecodeString(entry[2..], "feature name")));
                    }
                    break;
                case Qcow2HeaderExtensionType.Bitmaps:
                    if (data.Length < Qcow2BitmapsExtension.Size)
                        throw new Qcow2FormatException("bitmaps extension length", length, $"must be at least {Qcow2BitmapsExtension.Size}");
                    Bitmaps = new Qcow2BitmapsExtension(
                        BinaryPrimitives.ReadUInt32BigEndian(data),
                        BinaryPrimitives.ReadUInt64BigEndian(data[8..]),
                        BinaryPrimitives.ReadUInt64BigEndian(data[16..]));
                    break;
                default:
                    UnknownExtensions.Add(new Qcow2HeaderExtension(type, data.ToArray()));
                    break;
            }
        }
    }

    /// <summary>Reads a NUL-padded string; names must be valid UTF-8 without control bytes other than trailing NULs.</summary>
    private static string DecodeString(ReadOnlySpan<byte> bytes, string what)
    {
        int nul = bytes.IndexOf((byte)0);
        if (nul >= 0)
            bytes = bytes[..nul];
        try
        {
            return new UTF8Encoding(false, true).GetString(bytes);
        }
        catch (DecoderFallbackException)
        {
            throw new Qcow2FormatException(what, Convert.ToHexString(bytes[..Math.Min(bytes.Length, 32)]), "not valid UTF-8");
        }
    }

    /// <summary>The name of a feature bit: from the image's own feature-name table, else the known names, else "bit N".</summary>
    public string DescribeFeature(Qcow2FeatureKind kind, int bit)
    {
        foreach (var f in FeatureNames)
            if (f.Kind == kind && f.Bit == bit && f.Name.Length > 0)
                return $"{f.Name} (bit {bit})";
        foreach (var f in Qcow2FeatureName.Known)
            if (f.Kind == kind && f.Bit == bit)
                return $"{f.Name} (bit {bit})";
        return $"unknown feature (bit {bit})";
    }

    /// <summary>Names every set bit of a feature field, e.g. "dirty bit (bit 0), lazy refcounts (bit 0)".</summary>
    public IReadOnlyList<string> DescribeFeatures(Qcow2FeatureKind kind)
    {
        ulong bits = kind switch
        {
            Qcow2FeatureKind.Incompatible => (ulong)IncompatibleFeatures,
            Qcow2FeatureKind.Compatible => (ulong)CompatibleFeatures,
            _ => (ulong)AutoclearFeatures,
        };
        var names = new List<string>();
        for (int bit = 0; bit < 64; bit++)
            if ((bits & (1UL << bit)) != 0)
                names.Add(DescribeFeature(kind, bit));
        return names;
    }

    /// <summary>
    /// Serialises header, extensions, end marker and backing file name into a buffer of exactly one cluster.
    /// Updates <see cref="BackingFileOffset"/>, <see cref="BackingFileSize"/> and <see cref="HeaderLength"/> to match.
    /// </summary>
    public byte[] Serialize()
    {
        var buffer = new byte[ClusterSize];
        SerializeTo(buffer);
        return buffer;
    }

    /// <summary>Serialises into <paramref name="destination"/> (at least one cluster); returns the bytes used.</summary>
    public int SerializeTo(Span<byte> destination)
    {
        if (destination.Length < ClusterSize)
            throw new ArgumentException("destination must hold one cluster", nameof(destination));
        destination[..ClusterSize].Clear();
        int headerLength = Version == 2 ? V2HeaderLength : V3HeaderLength + UnknownHeaderFields.Length;
        HeaderLength = (uint)headerLength;

        int offset = headerLength;
        if (BackingFormat is not null)
            offset = WriteExtension(destination, offset, Qcow2HeaderExtensionType.BackingFormat, Encoding.UTF8.GetBytes(BackingFormat));
        if (ExternalDataFile is not null)
            offset = WriteExtension(destination, offset, Qcow2HeaderExtensionType.ExternalDataFile, Encoding.UTF8.GetBytes(ExternalDataFile));
        if (FeatureNames.Count > 0)
        {
            var table = new byte[FeatureNames.Count * Qcow2FeatureName.EntrySize];
            for (int i = 0; i < FeatureNames.Count; i++)
            {
                var entry = table.AsSpan(i * Qcow2FeatureName.EntrySize, Qcow2FeatureName.EntrySize);
                entry[0] = (byte)FeatureNames[i].Kind;
                entry[1] = FeatureNames[i].Bit;
                var name = Encoding.UTF8.GetBytes(FeatureNames[i].Name);
                name.AsSpan(0, Math.Min(name.Length, Qcow2FeatureName.MaxNameLength)).CopyTo(entry[2..]);
            }
            offset = WriteExtension(destination, offset, Qcow2HeaderExtensionType.FeatureNameTable, table);
        }
        if (Bitmaps is not null)
        {
            var data = new byte[Qcow2BitmapsExtension.Size];
            BinaryPrimitives.WriteUInt32BigEndian(data, Bitmaps.BitmapCount);
            BinaryPrimitives.WriteUInt64BigEndian(data.AsSpan(8), Bitmaps.DirectorySize);
            BinaryPrimitives.WriteUInt64BigEndian(data.AsSpan(16), Bitmaps.DirectoryOffset);
            offset = WriteExtension(destination, offset, Qcow2HeaderExtensionType.Bitmaps, data);
        }
        foreach (var extension in UnknownExtensions)
            offset = WriteExtension(destination, offset, extension.Type, extension.Data);
        offset = WriteExtension(destination, offset, Qcow2HeaderExtensionType.End, []);

        if (BackingFileName is not null)
        {
            var name = Encoding.UTF8.GetBytes(BackingFileName);
            if (name.Length > MaxBackingFileNameLength)
                throw new Qcow2FormatException("backing file name", BackingFileName, $"longer than {MaxBackingFileNameLength} bytes");
            EnsureFits(offset + name.Length);
            name.CopyTo(destination[offset..]);
            BackingFileOffset = (ulong)offset;
            BackingFileSize = (uint)name.Length;
            offset += name.Length;
        }
        else
        {
            BackingFileOffset = 0;
            BackingFileSize = 0;
        }

        var d = destination;
        BinaryPrimitives.WriteUInt32BigEndian(d, Magic);
        BinaryPrimitives.WriteUInt32BigEndian(d[4..], Version);
        BinaryPrimitives.WriteUInt64BigEndian(d[8..], BackingFileOffset);
        BinaryPrimitives.WriteUInt32BigEndian(d[16..], BackingFileSize);
        BinaryPrimitives.WriteUInt32BigEndian(d[20..], (uint)ClusterBits);
        BinaryPrimitives.WriteUInt64BigEndian(d[24..], Size);
        BinaryPrimitives.WriteUInt32BigEndian(d[32..], (uint)EncryptionMethod);
        BinaryPrimitives.WriteUInt32BigEndian(d[36..], L1Size);
        BinaryPrimitives.WriteUInt64BigEndian(d[40..], L1TableOffset);
        BinaryPrimitives.WriteUInt64BigEndian(d[48..], RefcountTableOffset);
        BinaryPrimitives.WriteUInt32BigEndian(d[56..], RefcountTableClusters);
        BinaryPrimitives.WriteUInt32BigEndian(d[60..], SnapshotCount);
        BinaryPrimitives.WriteUInt64BigEndian(d[64..], SnapshotsOffset);
        if (Version >= 3)
        {
            BinaryPrimitives.WriteUInt64BigEndian(d[72..], (ulong)IncompatibleFeatures);
            BinaryPrimitives.WriteUInt64BigEndian(d[80..], (ulong)CompatibleFeatures);
            BinaryPrimitives.WriteUInt64BigEndian(d[88..], (ulong)AutoclearFeatures);
            BinaryPrimitives.WriteUInt32BigEndian(d[96..], (uint)RefcountOrder);
            BinaryPrimitives.WriteUInt32BigEndian(d[100..], HeaderLength);
            d[104] = (byte)CompressionType;
            UnknownHeaderFields.CopyTo(d[V3HeaderLength..]);
        }
        return offset;
    }

    private int WriteExtension(Span<byte> destination, int offset, uint type, ReadOnlySpan<byte> data)
    {
        int padded = (data.Length + 7) & ~7;
        EnsureFits(offset + 8 + padded);
        BinaryPrimitives.WriteUInt32BigEndian(destination[offset..], type);
        BinaryPrimitives.WriteUInt32BigEndian(destination[(offset + 4)..], (uint)data.Length);
        data.CopyTo(destination[(offset + 8)..]);
        return offset + 8 + padded;
    }

    private void EnsureFits(int end)
    {
        if (end > ClusterSize)
            throw new Qcow2FormatException("header", end, $"header, extensions and backing file name do not fit in one cluster ({ClusterSize} bytes)");
    }

    /// <summary>A deep copy (writers change a copy and swap it in once the new header is durable).</summary>
    public Qcow2Header Clone()
    {
        var copy = (Qcow2Header)MemberwiseClone();
        copy.UnknownHeaderFields = (byte[])UnknownHeaderFields.Clone();
        copy.FeatureNames = [.. FeatureNames];
        copy.UnknownExtensions = [.. UnknownExtensions];
        return copy;
    }
}
