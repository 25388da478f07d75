using NbdQcow.HostIo;
using NbdQcow.Image.Qcow2.Format;

namespace NbdQcow.Image.Qcow2.Recover;

/// <summary>
/// The damaged image as recovery sees it: its file (opened read-only), header, geometry, the history overlay, and a
/// map of the host clusters known to hold metadata (header, refcount table and blocks, snapshot table, bitmaps, L1
/// and L2 tables), against which every mapping is checked before it is trusted.
/// </summary>
internal sealed class DamagedImage
{
    public DamagedImage(IHostFile file, Qcow2Header header, RecoveryTableOverlay overlay, RecoveryReport report)
    {
        File = file;
        Header = header;
        Geometry = Qcow2Geometry.FromHeader(header);
        Overlay = overlay;
        Report = report;
        FileLength = file.Length;
        FileClusters = (FileLength + Geometry.ClusterSize - 1) >> Geometry.ClusterBits;
        Metadata = new HostClusterBitmap(FileClusters);
    }

    public IHostFile File { get; }
    /// <summary>Decrypts data clusters of a LUKS-encrypted image (recovered with its key), or null.</summary>
    public Luks.SectorCipher? DataCipher { get; set; }
    /// <summary>The LUKS header area of an encrypted image: metadata, never lost data.</summary>
    public (long Offset, long Length)? EncryptionArea { get; set; }
    public Qcow2Header Header { get; }
    public Qcow2Geometry Geometry { get; }
    public RecoveryTableOverlay Overlay { get; }
    public RecoveryReport Report { get; }
    public long FileLength { get; }
    public long FileClusters { get; }
    /// <summary>Host clusters holding metadata of any kind.</summary>
    public HostClusterBitmap Metadata { get; }
    public IReadOnlyList<Qcow2Snapshot> Snapshots { get; private set; } = [];
    /// <summary>The read-only check found no corruption, so on-disk refcounts may serve as evidence (refcount 0 = freed).</summary>
    public bool RefcountsConsistent { get; set; }

    public long ClusterOf(long hostOffset) => hostOffset >> Geometry.ClusterBits;

    /// <summary>Reads guest data at <paramref name="host"/> (a cluster start), decrypted when the image is encrypted.</summary>
    public void ReadData(long host, Span<byte> destination)
    {
        File.Read(host, destination);
        DataCipher?.Decrypt(host / Luks.SectorCipher.SectorSize, destination);
    }

    /// <summary>Whether a table of <paramref name="length"/> bytes at <paramref name="offset"/> is aligned, off the header and inside the file.</summary>
    public bool IsPlausibleTable(long offset, long length) =>
        offset > 0 && (offset & Geometry.ClusterOffsetMask) == 0 && length >= 0 && offset <= FileLength - length;

    public void MarkMetadata(long offset, long length)
    {
        if (length <= 0) return;
        for (long c = ClusterOf(offset); c <= ClusterOf(offset + length - 1); c++)
            Metadata.Set(c);
    }

    /// <summary>Whether any cluster of [offset, offset + length) is known metadata.</summary>
    public bool TouchesMetadata(long offset, long length)
    {
        for (long c = ClusterOf(offset); c <= ClusterOf(offset + Math.Max(length, 1) - 1); c++)
            if (Metadata.Get(c)) return true;
        return false;
    }

    /// <summary>Reads one table cluster (or less) as history says it is: the file's bytes with newer history writes applied.</summary>
    public void ReadTable(long offset, Span<byte> destination)
    {
        File.Read(offset, destination);
        if (!Overlay.IsEmpty) Overlay.Apply(offset, destination);
    }

    public L2Entry GetL2Entry(ReadOnlySpan<byte> table, int index) =>
        Geometry.ExtendedL2
            ? new L2Entry(BigEndianTable.Get(table, index * 2), BigEndianTable.Get(table, index * 2 + 1))
            : new L2Entry(BigEndianTable.Get(table, index));

    /// <summary>What is wrong with an L2 entry as a mapping into this file (format, bounds, metadata overlap), or null.</summary>
    public string? L2EntryProblem(L2Entry entry)
    {
        if (!entry.IsCompressed && entry.HasZeroFlag && Header.Version < 3 && !Geometry.ExtendedL2)
            return "zero flag in a version 2 image (bit 0 is reserved there)";
        string? problem = entry.Problem(Geometry, externalDataFile: false);
        if (problem is not null) return problem;
        if (entry.IsCompressed)
        {
            var d = entry.Compressed(Geometry.ClusterBits);
            if (d.HostOffset < Geometry.ClusterSize || d.HostOffset >= FileLength)
                return $"compressed data at 0x{d.HostOffset:x} lies on the header or past the end of the file ({FileLength} bytes)";
            if (TouchesMetadata(d.HostOffset, Math.Min(d.CompressedLength, FileLength - d.HostOffset)))
                return $"compressed data at 0x{d.HostOffset:x} overlaps metadata";
            return null;
        }
        if (entry.HostOffset == 0) return null;
        if (entry.HostOffset >= FileLength)
            return $"host cluster 0x{entry.HostOffset:x} lies past the end of the file ({FileLength} bytes)";
        if (Metadata.Get(ClusterOf(entry.HostOffset)))
            return $"host cluster 0x{entry.HostOffset:x} is metadata (header, table or refcount block)";
        return null;
    }

    /// <summary>
    /// Marks header, refcount table and blocks, snapshot table and bitmaps as metadata. Damage is reported and the
    /// structure in question skipped: none of it is needed to recover data, only to tell data from metadata.
    /// </summary>
    public void MarkStructure()
    {
        MarkMetadata(0, Geometry.ClusterSize);
        if (EncryptionArea is { } luks) MarkMetadata(luks.Offset, luks.Length);
        MarkRefcountStructure();
        MarkSnapshotTable();
        MarkBitmaps();
    }

    private void MarkRefcountStructure()
    {
        long offset = (long)Math.Min(Header.RefcountTableOffset, long.MaxValue);
        long bytes = (long)Header.RefcountTableClusters << Geometry.ClusterBits;
        if (Header.RefcountTableClusters == 0 || bytes > Qcow2HeaderValidator.MaxRefcountTableBytes || !IsPlausibleTable(offset, bytes))
        {
            Report.Damage("refcount", $"refcount table at 0x{offset:x} ({Header.RefcountTableClusters} clusters) is unaligned, too large or outside the file; refcounts are not needed to recover, skipped");
            return;
        }
        MarkMetadata(offset, bytes);
        var table = BigEndianTable.Read(File, offset, (int)(bytes / 8));
        int bad = 0;
        string? first = null;
        for (int i = 0; i < table.Length; i++)
        {
            long block = (long)(table[i] & L1Entry.OffsetMask);
            if (table[i] == 0) continue;
            if ((table[i] & ~(ulong)L1Entry.OffsetMask) != 0 || !IsPlausibleTable(block, Geometry.ClusterSize))
            {
                if (bad++ == 0) first = $"entry {i} = 0x{table[i]:x16}";
                continue;
            }
            MarkMetadata(block, Geometry.ClusterSize);
        }
        if (bad > 0)
            Report.Damage("refcount", $"{bad} refcount table entries are unaligned, have reserved bits or point outside the file (first: {first}); skipped, refcounts are not needed to recover");
    }

    private void MarkSnapshotTable()
    {
        if (Header.SnapshotCount == 0) return;
        try
        {
            Snapshots = Qcow2SnapshotTable.Read(File, Header, FileLength);
            MarkMetadata((long)Header.SnapshotsOffset, Qcow2SnapshotTable.SizeOf(Snapshots));
        }
        catch (Exception e) when (e is Qcow2FormatException or OverflowException or ArgumentException)
        {
            Report.Damage("snapshot", $"snapshot table unreadable, snapshots skipped: {e.Message}");
        }
    }

    private void MarkBitmaps()
    {
        if (Header.Bitmaps is not { } ext || (Header.AutoclearFeatures & Qcow2AutoclearFeatures.Bitmaps) == 0) return;
        long dirOffset = (long)Math.Min(ext.DirectoryOffset, long.MaxValue);
        if (ext.DirectorySize > Qcow2BitmapsExtension.MaxDirectorySize || !IsPlausibleTable(dirOffset, (long)ext.DirectorySize))
        {
            Report.Damage("bitmap", $"bitmap directory at 0x{dirOffset:x} is unaligned or outside the file; bitmaps are not recovered");
            return;
        }
        MarkMetadata(dirOffset, (long)ext.DirectorySize);
        try
        {
            var directory = new byte[ext.DirectorySize];
            File.Read(dirOffset, directory);
            foreach (var bitmap in Qcow2BitmapDirectory.Parse(directory, ext.BitmapCount))
            {
                long tableOffset = (long)bitmap.BitmapTableOffset;
                if (bitmap.BitmapTableSize == 0) continue;
                if (!IsPlausibleTable(tableOffset, bitmap.BitmapTableSize * 8L)) continue;
                MarkMetadata(tableOffset, bitmap.BitmapTableSize * 8L);
                foreach (ulong raw in BigEndianTable.Read(File, tableOffset, (int)bitmap.BitmapTableSize))
                {
                    long data = (long)(raw & L1Entry.OffsetMask);
                    if (data != 0 && data < FileLength) MarkMetadata(data, Geometry.ClusterSize);
                }
            }
        }
        catch (Qcow2FormatException e)
        {
            Report.Damage("bitmap", $"bitmap directory unreadable: {e.Message}");
        }
    }
}
