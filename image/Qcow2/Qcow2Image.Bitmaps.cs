using System.Buffers.Binary;
using NbdQcow.Image.Qcow2.Format;

namespace NbdQcow.Image.Qcow2;

// Persistent dirty bitmaps: the directory is parsed at open. On a writable image every enabled bitmap is loaded,
// marked in use on disk (so a crash leaves it visibly inconsistent, never silently stale), updated by every
// guest write, zero and trim, and stored back — then marked not in use — at close, as qemu does.
public sealed partial class Qcow2Image
{
    /// <summary>Enabled bitmaps larger than this in memory are not tracked; they are marked in use (inconsistent) instead.</summary>
    public const long MaxTrackedBitmapBytes = 64L << 20;

    private List<Qcow2TrackedBitmap>? _trackedBitmaps;
    /// <summary>Enabled bitmaps marked in use that this image cannot track; they stay in use on close.</summary>
    private readonly List<string> _untrackableBitmaps = [];

    /// <summary>Names of enabled bitmaps that could not be tracked and were left marked in use (inconsistent).</summary>
    public IReadOnlyList<string> UntrackableBitmaps => _untrackableBitmaps;

    private void LoadBitmapDirectory()
    {
        // Without the autoclear bit the extension was left by a writer that did not maintain it: ignore it (spec).
        if (Header.Bitmaps is not { } extension || (Header.AutoclearFeatures & Qcow2AutoclearFeatures.Bitmaps) == 0)
            return;
        var directory = new byte[extension.DirectorySize];
        File.Read((long)extension.DirectoryOffset, directory);
        var entries = Qcow2BitmapDirectory.Parse(directory, extension.BitmapCount);
        long fileLength = File.Length;
        foreach (var entry in entries)
        {
            if (entry.BitmapTableSize > 0)
                Qcow2HeaderValidator.CheckTable($"bitmap \"{entry.Name}\" bitmap_table_offset", entry.BitmapTableOffset,
                    entry.BitmapTableSize * 8L, Geometry.ClusterOffsetMask, fileLength);
        }
        BitmapDirectory = entries;
    }

    /// <summary>After a read-write open: loads enabled bitmaps and marks them in use, durably, before any write.</summary>
    private void StartBitmapTracking()
    {
        if (BitmapDirectory.Count == 0 || ServedSnapshot is not null)
            return;
        var tracked = new List<Qcow2TrackedBitmap>();
        long entryOffset = (long)Header.Bitmaps!.DirectoryOffset;
        long memory = 0;
        var updated = new List<Qcow2BitmapDirectoryEntry>();
        bool changed = false;
        foreach (var entry in BitmapDirectory)
        {
            var current = entry;
            if (entry.Enabled && !entry.InUse)
            {
                var bitmap = TryLoadBitmap(entry, entryOffset, ref memory);
                if (bitmap is not null)
                    tracked.Add(bitmap);
                else
                    _untrackableBitmaps.Add(entry.Name);
                WriteBitmapFlags(entryOffset, entry.Flags | Qcow2BitmapFlags.InUse);
                current = entry with { Flags = entry.Flags | Qcow2BitmapFlags.InUse };
                changed = true;
            }
            updated.Add(current);
            entryOffset += Qcow2BitmapDirectory.EntrySize(entry);
        }
        if (changed)
            File.Flush();
        BitmapDirectory = updated;
        _trackedBitmaps = tracked;
    }

    private Qcow2TrackedBitmap? TryLoadBitmap(Qcow2BitmapDirectoryEntry entry, long entryOffset, ref long memory)
    {
        if (entry.Type != Qcow2BitmapDirectoryEntry.DirtyTrackingType || entry.ExtraData.Length > 0 && (entry.Flags & Qcow2BitmapFlags.ExtraDataCompatible) == 0)
            return null;
        long bits = (Size + entry.Granularity - 1) >> entry.GranularityBits;
        long bitsPerCluster = Geometry.ClusterSize * 8L;
        long tableEntries = (bits + bitsPerCluster - 1) / bitsPerCluster;
        if (entry.BitmapTableSize < tableEntries || memory + bits / 8 > MaxTrackedBitmapBytes)
            return null;
        memory += bits / 8;
        var table = BigEndianTable.Read(File, (long)entry.BitmapTableOffset, (int)entry.BitmapTableSize);
        var bitmap = new Qcow2TrackedBitmap(entry, entryOffset, bits, table);
        var cluster = new byte[Geometry.ClusterSize];
        for (int i = 0; i < tableEntries; i++)
        {
            long offset = (long)(table[i] & L2Entry.OffsetMask);
            if (offset == 0)
            {
                if ((table[i] & 1) != 0)
                    bitmap.SetRange(i * bitsPerCluster, bitsPerCluster);
                continue;
            }
            if ((offset & Geometry.ClusterOffsetMask) != 0 || offset > File.Length - Geometry.ClusterSize)
                return null;
            File.Read(offset, cluster);
            bitmap.Deserialize(i, cluster);
        }
        return bitmap;
    }

    private void WriteBitmapFlags(long entryOffset, Qcow2BitmapFlags flags)
    {
        Span<byte> bytes = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(bytes, (uint)flags);
        File.Write(entryOffset + 12, bytes);
    }

    /// <summary>Records a completed guest write, zero or trim in every enabled bitmap (called by the write path).</summary>
    partial void OnGuestWrite(long offset, long length)
    {
        var bitmaps = _trackedBitmaps;
        if (bitmaps is null)
            return;
        foreach (var bitmap in bitmaps)
            bitmap.Mark(offset, length);
    }

    /// <summary>
    /// Writes every tracked bitmap back (new data clusters allocated and their refcounts made durable before the
    /// bitmap table points at them), then clears the in-use flags. Called on close of a writable image.
    /// </summary>
    private async ValueTask StoreBitmapsAsync()
    {
        var bitmaps = _trackedBitmaps;
        if (bitmaps is null || bitmaps.Count == 0)
            return;
        int clusterSize = Geometry.ClusterSize;
        var cluster = new byte[clusterSize];
        var newClusters = new List<(Qcow2TrackedBitmap Bitmap, int Index)>();
        await MetadataLock.WaitAsync().ConfigureAwait(false);
        try
        {
            foreach (var bitmap in bitmaps)
                for (int i = 0; i < bitmap.Table.Length; i++)
                    if ((bitmap.Table[i] & L2Entry.OffsetMask) == 0 && bitmap.Serialize(i, cluster))
                    {
                        bitmap.Table[i] = (ulong)Refcounts.Allocate(1);
                        newClusters.Add((bitmap, i));
                    }
        }
        finally
        {
            MetadataLock.Release();
        }
        if (newClusters.Count > 0)
            await DurableFlushAsync().ConfigureAwait(false); // refcounts of the new clusters before any reference

        foreach (var bitmap in bitmaps)
        {
            for (int i = 0; i < bitmap.Table.Length; i++)
            {
                long offset = (long)(bitmap.Table[i] & L2Entry.OffsetMask);
                bool any = bitmap.Serialize(i, cluster);
                if (offset != 0)
                    File.Write(offset, cluster);
                else if (!any)
                    bitmap.Table[i] = 0; // no data cluster and no bit set: the entry means "all zeros"
            }
        }
        File.Flush(); // data clusters before the tables that point at them
        foreach (var bitmap in bitmaps)
        {
            var table = new byte[bitmap.Table.Length * 8];
            BigEndianTable.Encode(bitmap.Table, table);
            File.Write((long)bitmap.Entry.BitmapTableOffset, table);
        }
        File.Flush(); // tables before the bitmaps are declared consistent
        foreach (var bitmap in bitmaps)
            WriteBitmapFlags(bitmap.DirectoryEntryOffset, bitmap.Entry.Flags & ~Qcow2BitmapFlags.InUse);
        File.Flush();
    }
}
