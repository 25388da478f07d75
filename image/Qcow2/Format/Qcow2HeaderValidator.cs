namespace NbdQcow.Image.Qcow2.Format;

/// <summary>
/// Checks a parsed header against the file it came from, before anything is allocated from its fields:
/// sizes bounded (so a crafted header cannot make the reader allocate gigabytes), tables aligned, inside the
/// file and not overlapping, and features this implementation cannot honour refused by name.
/// </summary>
public static class Qcow2HeaderValidator
{
    /// <summary>qemu's QCOW_MAX_L1_SIZE (32 MiB of L1 entries).</summary>
    public const long MaxL1Entries = 32L * 1024 * 1024 / 8;
    /// <summary>qemu's QCOW_MAX_REFTABLE_SIZE (8 MiB).</summary>
    public const long MaxRefcountTableBytes = 8L * 1024 * 1024;
    /// <summary>Largest virtual size accepted (qemu's limit: 2^63 - 512 rounded; offsets stay in a long).</summary>
    public const ulong MaxVirtualSize = 1UL << 62;

    /// <summary>Refuses features this implementation cannot serve: unknown incompatible bits, legacy AES encryption.</summary>
    public static void EnsureSupported(Qcow2Header header)
    {
        var unknown = header.IncompatibleFeatures & ~Qcow2Header.KnownIncompatibleFeatures;
        if (unknown != 0)
        {
            var names = new List<string>();
            for (int bit = 0; bit < 64; bit++)
                if (((ulong)unknown & (1UL << bit)) != 0)
                    names.Add(header.DescribeFeature(Qcow2FeatureKind.Incompatible, bit));
            throw new Qcow2FormatException("incompatible_features", $"0x{(ulong)header.IncompatibleFeatures:x}",
                $"unsupported incompatible feature(s): {string.Join(", ", names)}");
        }
        bool hasEncryptionHeader = false;
        foreach (var extension in header.UnknownExtensions)
            if (extension.Type == Qcow2HeaderExtensionType.FullDiskEncryption)
                hasEncryptionHeader = true;
        switch (header.EncryptionMethod)
        {
            case Qcow2EncryptionMethod.None:
                if (hasEncryptionHeader)
                    throw new Qcow2FormatException("header extension", "full disk encryption (0x0537be77)", "present although crypt_method is 0 (not encrypted)");
                break;
            case Qcow2EncryptionMethod.Aes:
                throw new Qcow2FormatException("crypt_method", 1, "image is encrypted with legacy AES (qcow2 crypt_method 1), which nbdqcow does not support (qemu deprecated it; convert with qemu-img convert -O qcow2 --object secret,... -o encrypt.format=luks,...)");
            case Qcow2EncryptionMethod.Luks:
                if (!hasEncryptionHeader)
                    throw new Qcow2FormatException("crypt_method", 2, "LUKS encryption without the full disk encryption header extension (0x0537be77)");
                break;
            default:
                throw new Qcow2FormatException("crypt_method", (uint)header.EncryptionMethod, "unknown encryption method");
        }
    }

    /// <summary>
    /// Where the LUKS header area of a crypt_method 2 image lies (offset, length), from the full-disk-encryption
    /// extension, checked against the file: cluster-aligned, inside it, and of a bounded size. Null when not encrypted.
    /// </summary>
    public static (long Offset, long Length)? EncryptionHeaderArea(Qcow2Header header, long fileLength)
    {
        if (header.EncryptionMethod != Qcow2EncryptionMethod.Luks) return null;
        foreach (var extension in header.UnknownExtensions)
        {
            if (extension.Type != Qcow2HeaderExtensionType.FullDiskEncryption) continue;
            if (extension.Data.Length < 16)
                throw new Qcow2FormatException("full disk encryption extension length", extension.Data.Length, "must be at least 16");
            ulong offset = System.Buffers.Binary.BinaryPrimitives.ReadUInt64BigEndian(extension.Data);
            ulong length = System.Buffers.Binary.BinaryPrimitives.ReadUInt64BigEndian(extension.Data.AsSpan(8));
            if (length is < 592 or > MaxEncryptionHeaderBytes)
                throw new Qcow2FormatException("encryption header length", length, $"must be 592..{MaxEncryptionHeaderBytes} bytes");
            if ((offset & (ulong)(header.ClusterSize - 1)) != 0 || offset == 0)
                throw new Qcow2FormatException("encryption header offset", offset, "not aligned to a cluster (or on the header)");
            if (offset + length > (ulong)fileLength)
                throw new Qcow2FormatException("encryption header offset", offset, $"the {length}-byte LUKS header lies past the end of the file ({fileLength} bytes)");
            return ((long)offset, (long)length);
        }
        throw new Qcow2FormatException("crypt_method", 2, "LUKS encryption without the full disk encryption header extension (0x0537be77)");
    }

    /// <summary>Largest LUKS header area accepted (qemu's is about 2 MiB), so a crafted length cannot make us read gigabytes.</summary>
    public const long MaxEncryptionHeaderBytes = 16L << 20;

    /// <summary>Checks every table location and size in <paramref name="header"/> against <paramref name="fileLength"/>.</summary>
    public static void Validate(Qcow2Header header, long fileLength)
    {
        int clusterSize = header.ClusterSize;
        long mask = clusterSize - 1;
        if (header.Version == 2 && (header.HasExtendedL2 || header.HasExternalDataFile))
            throw new Qcow2FormatException("version", 2, "extended L2 and external data files need version 3");
        if (header.HasExtendedL2 && header.ClusterBits < 14)
            throw new Qcow2FormatException("cluster_bits", header.ClusterBits, "extended L2 entries need clusters of at least 16 KiB");
        if (header.Size > MaxVirtualSize)
            throw new Qcow2FormatException("size", header.Size, $"virtual size larger than {MaxVirtualSize}");

        var geometry = Qcow2Geometry.FromHeader(header);
        long requiredL1 = geometry.RequiredL1Entries;
        if (requiredL1 > MaxL1Entries)
            throw new Qcow2FormatException("size", header.Size, $"needs {requiredL1} L1 entries, more than the limit {MaxL1Entries}");
        if (header.L1Size > MaxL1Entries)
            throw new Qcow2FormatException("l1_size", header.L1Size, $"more than the limit {MaxL1Entries} entries");
        if (header.L1Size < requiredL1)
            throw new Qcow2FormatException("l1_size", header.L1Size, $"too small for virtual size {header.Size} (needs {requiredL1})");

        var regions = new List<(string Name, long Start, long Length)> { ("header", 0, clusterSize) };
        if (header.L1Size > 0)
        {
            long l1Bytes = header.L1Size * 8L;
            CheckTable("l1_table_offset", header.L1TableOffset, l1Bytes, mask, fileLength);
            regions.Add(("L1 table", (long)header.L1TableOffset, l1Bytes));
        }

        if (header.RefcountTableClusters == 0)
            throw new Qcow2FormatException("refcount_table_clusters", 0, "an image needs a refcount table");
        long refcountTableBytes = (long)header.RefcountTableClusters * clusterSize;
        if (refcountTableBytes > MaxRefcountTableBytes)
            throw new Qcow2FormatException("refcount_table_clusters", header.RefcountTableClusters, $"refcount table larger than {MaxRefcountTableBytes} bytes");
        CheckTable("refcount_table_offset", header.RefcountTableOffset, refcountTableBytes, mask, fileLength);
        regions.Add(("refcount table", (long)header.RefcountTableOffset, refcountTableBytes));

        if (header.SnapshotCount > Qcow2SnapshotTable.MaxSnapshots)
            throw new Qcow2FormatException("nb_snapshots", header.SnapshotCount, $"more than {Qcow2SnapshotTable.MaxSnapshots}");
        if (header.SnapshotCount > 0)
        {
            // Each entry takes at least 40 bytes; the table's full extent is checked entry by entry when read.
            CheckTable("snapshots_offset", header.SnapshotsOffset, header.SnapshotCount * 40L, mask, fileLength);
            regions.Add(("snapshot table", (long)header.SnapshotsOffset, header.SnapshotCount * 40L));
        }

        if (header.Bitmaps is { } bitmaps && (header.AutoclearFeatures & Qcow2AutoclearFeatures.Bitmaps) != 0)
        {
            if (bitmaps.BitmapCount == 0 || bitmaps.BitmapCount > Qcow2BitmapsExtension.MaxBitmaps)
                throw new Qcow2FormatException("bitmaps extension nb_bitmaps", bitmaps.BitmapCount, $"must be 1..{Qcow2BitmapsExtension.MaxBitmaps}");
            if (bitmaps.DirectorySize == 0 || bitmaps.DirectorySize > Qcow2BitmapsExtension.MaxDirectorySize)
                throw new Qcow2FormatException("bitmaps extension bitmap_directory_size", bitmaps.DirectorySize, $"must be 1..{Qcow2BitmapsExtension.MaxDirectorySize}");
            CheckTable("bitmaps extension bitmap_directory_offset", bitmaps.DirectoryOffset, (long)bitmaps.DirectorySize, mask, fileLength);
            regions.Add(("bitmap directory", (long)bitmaps.DirectoryOffset, (long)bitmaps.DirectorySize));
        }

        for (int i = 0; i < regions.Count; i++)
            for (int j = i + 1; j < regions.Count; j++)
            {
                var a = regions[i];
                var b = regions[j];
                if (a.Start < b.Start + b.Length && b.Start < a.Start + a.Length)
                    throw new Qcow2FormatException($"{b.Name} offset", b.Start, $"overlaps the {a.Name} at {a.Start} (0x{a.Start:x})");
            }
    }

    /// <summary>Checks that a table of <paramref name="length"/> bytes at <paramref name="offset"/> is cluster aligned and inside the file.</summary>
    public static void CheckTable(string field, ulong offset, long length, long clusterMask, long fileLength)
    {
        if (offset == 0)
            throw new Qcow2FormatException(field, 0L, "table at offset 0 (on the header)");
        if (((long)offset & clusterMask) != 0 || offset > long.MaxValue)
            throw new Qcow2FormatException(field, offset, "not aligned to a cluster");
        if ((long)offset > fileLength || length > fileLength - (long)offset)
            throw new Qcow2FormatException(field, offset, $"table of {length} bytes runs past the end of the file ({fileLength} bytes)");
    }
}
