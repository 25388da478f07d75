using System.Buffers.Binary;
using NbdQcow.Image.Qcow2.Format;

namespace NbdQcow.Image.Qcow2;

/// <summary>
/// Creates an empty qcow2 v3 image: header (with feature-name table, backing file and backing format),
/// refcount table, refcount blocks and a zeroed L1 table, laid out from cluster 0 as qemu-img does.
/// Never overwrites an existing file.
/// </summary>
public static class Qcow2Creator
{
    public static void Create(string path, Qcow2CreateOptions options)
    {
        int clusterSize = options.ClusterSize;
        if (clusterSize < 512 || clusterSize > 2 << 20 || (clusterSize & (clusterSize - 1)) != 0)
            throw new ArgumentException($"cluster size {clusterSize} must be a power of two from 512 to 2097152 (2 MiB)", nameof(options));
        int clusterBits = System.Numerics.BitOperations.Log2((uint)clusterSize);
        if (options.ExtendedL2 && clusterBits < 14)
            throw new ArgumentException($"extended L2 entries need clusters of at least 16 KiB (got {clusterSize})", nameof(options));
        if (options.RefcountOrder is < 0 or > Qcow2Header.MaxRefcountOrder)
            throw new ArgumentException($"refcount order {options.RefcountOrder} must be 0..6", nameof(options));

        string? backingFormat = options.BackingFormat;
        long? backingSize = null;
        if (options.BackingFile is { } backing)
        {
            string resolved = System.IO.Path.IsPathRooted(backing)
                ? backing
                : System.IO.Path.Combine(System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(path)) ?? ".", backing);
            if (!System.IO.File.Exists(resolved))
                throw new FileNotFoundException($"backing file {backing} not found (looked at {resolved})", resolved);
            var format = backingFormat is null ? ImageFormats.Probe(resolved)
                : ImageFormats.Find(backingFormat)
                  ?? throw new ArgumentException($"backing format {backingFormat} is not supported ({string.Join(", ", ImageFormats.Names)})", nameof(options));
            backingFormat = format.Name;
            backingSize = BackingSize(resolved, format);
        }
        long virtualSize = options.Size ?? backingSize
            ?? throw new ArgumentException("a size is needed when there is no backing file", nameof(options));
        if (virtualSize < 0 || (ulong)virtualSize > Qcow2HeaderValidator.MaxVirtualSize)
            throw new ArgumentException($"size {virtualSize} out of range (0..{Qcow2HeaderValidator.MaxVirtualSize})", nameof(options));
        virtualSize = (virtualSize + 511) & ~511L;

        var geometry = new Qcow2Geometry(clusterBits, options.ExtendedL2, options.RefcountOrder, virtualSize);
        long l1Entries = geometry.RequiredL1Entries;
        if (l1Entries > Qcow2HeaderValidator.MaxL1Entries)
            throw new ArgumentException($"size {virtualSize} needs {l1Entries} L1 entries with {clusterSize}-byte clusters, more than {Qcow2HeaderValidator.MaxL1Entries}; use larger clusters", nameof(options));
        long l1Clusters = Math.Max(1, (l1Entries * 8 + clusterSize - 1) / clusterSize);
        byte[]? luksArea = options.EncryptionSecret is { } secret ? Luks.LuksVolume.CreateArea(secret, options.EncryptionIterTime) : null;
        long luksClusters = luksArea is null ? 0 : (luksArea.Length + clusterSize - 1) / clusterSize;

        // Header + refcount table + refcount blocks + L1 must all be covered by the refcount blocks.
        long tableClusters = 1, blocks = 1;
        while (true)
        {
            long total = 1 + tableClusters + blocks + l1Clusters + luksClusters;
            long neededBlocks = (total + geometry.RefcountBlockEntries - 1) / geometry.RefcountBlockEntries;
            long neededTable = (neededBlocks * 8 + clusterSize - 1) / clusterSize;
            if (neededBlocks == blocks && neededTable == tableClusters) break;
            blocks = neededBlocks;
            tableClusters = neededTable;
        }
        long tableOffset = clusterSize;
        long blocksOffset = tableOffset + tableClusters * clusterSize;
        long l1Offset = blocksOffset + blocks * clusterSize;
        long luksOffset = l1Offset + l1Clusters * clusterSize;
        long totalClusters = 1 + tableClusters + blocks + l1Clusters + luksClusters;

        var header = new Qcow2Header
        {
            Version = 3,
            ClusterBits = clusterBits,
            Size = (ulong)virtualSize,
            L1Size = (uint)l1Entries,
            L1TableOffset = (ulong)l1Offset,
            RefcountTableOffset = (ulong)tableOffset,
            RefcountTableClusters = (uint)tableClusters,
            RefcountOrder = options.RefcountOrder,
            IncompatibleFeatures = options.ExtendedL2 ? Qcow2IncompatibleFeatures.ExtendedL2 : Qcow2IncompatibleFeatures.None,
            // qemu's names only: the journal's name is added when an image first uses the journal.
            FeatureNames = [.. Qcow2FeatureName.Known.Where(f => f.Name != Qcow2FeatureName.JournalFeatureName)],
            BackingFileName = options.BackingFile,
            BackingFormat = options.BackingFile is null ? null : backingFormat,
        };
        if (luksArea is not null)
        {
            // The LUKS header and its key material live in clusters after the L1 table, named by the extension.
            var pointer = new byte[16];
            BinaryPrimitives.WriteUInt64BigEndian(pointer, (ulong)luksOffset);
            BinaryPrimitives.WriteUInt64BigEndian(pointer.AsSpan(8), (ulong)luksArea.Length);
            header.EncryptionMethod = Qcow2EncryptionMethod.Luks;
            header.UnknownExtensions.Add(new Qcow2HeaderExtension(Qcow2HeaderExtensionType.FullDiskEncryption, pointer));
        }

        // Small clusters cannot hold the feature-name table next to the header and backing file name: leave it out.
        try { header.Serialize(); }
        catch (Qcow2FormatException) { header.FeatureNames = []; }
        byte[] headerCluster = header.Serialize();

        using var stream = new FileStream(path, FileMode.CreateNew, FileAccess.Write, FileShare.None);
        try
        {
            stream.Write(headerCluster);
            var cluster = new byte[clusterSize];
            for (long i = 0; i < tableClusters; i++)
            {
                Array.Clear(cluster);
                for (int j = 0; j < clusterSize / 8; j++)
                {
                    long block = i * (clusterSize / 8) + j;
                    if (block < blocks)
                        BinaryPrimitives.WriteUInt64BigEndian(cluster.AsSpan(j * 8), (ulong)(blocksOffset + block * clusterSize));
                }
                stream.Write(cluster);
            }
            for (long b = 0; b < blocks; b++)
            {
                Array.Clear(cluster);
                for (int j = 0; j < geometry.RefcountBlockEntries; j++)
                {
                    long c = b * geometry.RefcountBlockEntries + j;
                    if (c < totalClusters)
                        RefcountBlockCodec.Set(cluster, j, options.RefcountOrder, 1);
                }
                stream.Write(cluster);
            }
            stream.SetLength(totalClusters * clusterSize); // the L1 table: zeroes
            if (luksArea is not null)
            {
                stream.Position = luksOffset;
                stream.Write(luksArea);
            }
            stream.Flush(flushToDisk: true);
        }
        catch
        {
            stream.Dispose();
            System.IO.File.Delete(path);
            throw;
        }
    }

    /// <summary>Virtual size of a backing file: a qcow2 header's size field, a raw file's length, else what the format's image says.</summary>
    private static long BackingSize(string path, ImageFormat format)
    {
        if (format == ImageFormats.Raw)
            return new FileInfo(path).Length;
        if (format == ImageFormats.Qcow2)
        {
            using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
            var head = new byte[32];
            stream.ReadExactly(head);
            return (long)BinaryPrimitives.ReadUInt64BigEndian(head.AsSpan(24));
        }
        var device = format.Open(path, new ImageOpenOptions { ReadOnly = true, MaxDirtyAge = null, BackingRoot = "/" });
        try
        {
            return device.Size;
        }
        finally
        {
            device.DisposeAsync().AsTask().GetAwaiter().GetResult();
        }
    }

    /// <summary>Parses sizes like 10G, 512M, 1T, 4096, 1.5G (binary units, as qemu-img).</summary>
    public static long ParseSize(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        string t = text.Trim();
        if (t.EndsWith("iB", StringComparison.OrdinalIgnoreCase)) t = t[..^2];
        else if (t.EndsWith('B') || t.EndsWith('b')) t = t[..^1];
        int shift = 0;
        if (t.Length > 0)
        {
            shift = char.ToUpperInvariant(t[^1]) switch
            {
                'K' => 10,
                'M' => 20,
                'G' => 30,
                'T' => 40,
                'P' => 50,
                'E' => 60,
                _ => 0,
            };
            if (shift > 0) t = t[..^1];
        }
        if (!decimal.TryParse(t, System.Globalization.NumberStyles.AllowDecimalPoint, System.Globalization.CultureInfo.InvariantCulture, out var value) || value < 0)
            throw new FormatException($"'{text}' is not a size (examples: 10G, 512M, 1T, 65536)");
        decimal bytes = value * (decimal)Math.Pow(2, shift);
        if (bytes > long.MaxValue)
            throw new FormatException($"'{text}' is too large");
        if (bytes != decimal.Truncate(bytes))
            throw new FormatException($"'{text}' is not a whole number of bytes");
        return (long)bytes;
    }
}
