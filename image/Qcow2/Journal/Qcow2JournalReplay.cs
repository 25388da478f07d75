using System.Buffers.Binary;
using NbdQcow.Cache.Journal;
using NbdQcow.HostIo;
using NbdQcow.Image.Qcow2.Format;

namespace NbdQcow.Image.Qcow2.Journal;

/// <summary>
/// Brings an image whose header carries the journal bit up to date. Read-write: every committed table image is
/// written in place, the file is synced, the journal's transactions are retired into the history and a new
/// generation starts (durable), then the bit is cleared (durable). Each step is idempotent, so a crash anywhere
/// in between is repaired by replaying again. Read-only: the committed images are laid over the file in memory.
/// Replay stops at the first torn, garbled, stale or out-of-sequence transaction: nothing after it was ever
/// acknowledged as durable.
/// </summary>
public static class Qcow2JournalReplay
{
    public static bool HasPendingJournal(Qcow2Header header) =>
        (header.IncompatibleFeatures & Qcow2IncompatibleFeatures.NbdqcowJournal) != 0;

    /// <summary>
    /// Reads the committed transactions of the image's journal; refuses when the journal is gone, unreadable, or
    /// names a table where this image can have none (see <see cref="CheckTableOffsets"/>).
    /// </summary>
    public static JournalReadResult ReadCommitted(string imagePath, IHostFile imageFile, Qcow2Header header, HostFileFactory hostFiles)
    {
        string journalPath = Qcow2JournalFiles.JournalPath(imagePath);
        if (!System.IO.File.Exists(journalPath))
            throw Missing(header, journalPath, "is missing");
        using var file = hostFiles(journalPath, new HostFileOptions(ReadOnly: true, Direct: false));
        var read = JournalReader.Read(file);
        if (read.Header is null)
            throw Missing(header, journalPath, $"cannot be read ({read.StopReason})");
        if (read.Header.TableSize != header.ClusterSize)
            throw Missing(header, journalPath, $"has table size {read.Header.TableSize}, not the image's cluster size {header.ClusterSize}");
        string? misplaced = CheckTableOffsets(read.Transactions, imageFile, header);
        if (misplaced is not null)
            throw Missing(header, journalPath, $"is damaged or belongs to another image: {misplaced}");
        return read;
    }

    /// <summary>
    /// How far past the file's end a table may lie without the refcounts counting it: the tables the journal adds
    /// there (committed before the file grew to hold them, e.g. a grown refcount table the header does not point to
    /// yet), plus clusters allocated for writes still in flight at the crash, which leave a hole before them.
    /// </summary>
    public const long MaxGapPastEnd = 1L << 30;

    /// <summary>
    /// Every table the journal would write must have a place in this image: never the header's cluster, and past
    /// the file's end only within <see cref="MaxGapPastEnd"/> plus the journal's own new tables, or where the image's
    /// refcounts, as the journal leaves them, count the cluster as in use. Anything else would write where no table
    /// can be, or grow the file without bound (a checksummed but foreign or crafted journal).
    /// Returns the problem, or null.
    /// </summary>
    public static string? CheckTableOffsets(IReadOnlyList<JournalTransaction> transactions, IHostFile imageFile, Qcow2Header header)
    {
        int clusterSize = header.ClusterSize;
        var images = JournalOverlayFile.LatestImages(transactions);
        long imageLength = imageFile.Length;
        long fileEnd = (imageLength + clusterSize - 1) / clusterSize * clusterSize;
        long beyond = images.Keys.Count(offset => offset >= fileEnd);
        long limit = fileEnd + beyond * clusterSize + MaxGapPastEnd;
        // In offset order, so tables counted by one refcount block follow each other and the block is read once
        // (a journal may name thousands of tables past the end); one block buffer bounds the memory.
        var ordered = new List<long>(images.Keys);
        ordered.Sort();
        var refcounts = new RefcountBlockReader(images, imageFile, header, imageLength);
        foreach (long offset in ordered)
        {
            if (offset < clusterSize)
                return $"a table at offset {offset} would overwrite the image header";
            if (offset < limit) continue;
            if (!refcounts.CountsInUse(offset))
                return $"a table at offset {offset} lies past the image file's end ({imageLength} bytes) by more than the journal's " +
                       $"{beyond} new tables and {MaxGapPastEnd >> 20} MiB, where the image's refcounts count no cluster";
        }
        return null;
    }

    /// <summary>
    /// Answers "does the image count this cluster in use" as the file will be after the replay, keeping the last
    /// refcount block read: asked in offset order, each block is read once.
    /// </summary>
    private sealed class RefcountBlockReader(Dictionary<long, byte[]> images, IHostFile imageFile, Qcow2Header header, long imageLength)
    {
        private readonly Qcow2Geometry _geometry = Qcow2Geometry.FromHeader(header);
        private readonly byte[] _block = new byte[header.ClusterSize];
        private long _blockOffset = -1;
        private long _tableIndex = -1;
        private long _tableEntry;

        public bool CountsInUse(long offset)
        {
            long tableIndex = _geometry.RefcountTableIndex(offset);
            if (tableIndex >= (long)header.RefcountTableClusters * (header.ClusterSize / 8)) return false;
            if (tableIndex != _tableIndex)
            {
                Span<byte> entry = stackalloc byte[8];
                ReadThroughJournal((long)header.RefcountTableOffset + tableIndex * 8, entry);
                _tableEntry = (long)(BinaryPrimitives.ReadUInt64BigEndian(entry) & L1Entry.OffsetMask);
                _tableIndex = tableIndex;
            }
            long block = _tableEntry;
            if (block == 0 || block % header.ClusterSize != 0) return false;
            if (block != _blockOffset)
            {
                ReadThroughJournal(block, _block);
                _blockOffset = block;
            }
            int index = (int)((offset >> header.ClusterBits) & (_geometry.RefcountBlockEntries - 1));
            return RefcountBlockCodec.Get(_block, index, header.RefcountOrder) != 0;
        }

        /// <summary>Reads what the file will hold after the replay: the journal's image of a table, else the file (zeroes past its end).</summary>
        private void ReadThroughJournal(long offset, Span<byte> buffer)
        {
            int tableSize = header.ClusterSize;
            long table = offset / tableSize * tableSize;
            if (offset + buffer.Length <= table + tableSize && images.TryGetValue(table, out var image))
            {
                image.AsSpan((int)(offset - table), buffer.Length).CopyTo(buffer);
                return;
            }
            buffer.Clear();
            if (offset + buffer.Length <= imageLength) imageFile.Read(offset, buffer);
        }
    }

    /// <summary>Replays on disk and returns the header as it is afterwards (journal bit cleared).</summary>
    public static Qcow2Header ReplayOnDisk(string imagePath, IHostFile imageFile, Qcow2Header header, HostFileFactory hostFiles)
    {
        var read = ReadCommitted(imagePath, imageFile, header, hostFiles);
        var images = JournalOverlayFile.LatestImages(read.Transactions);
        var ordered = new List<long>(images.Keys);
        ordered.Sort();
        foreach (long offset in ordered) imageFile.Write(offset, images[offset]);
        imageFile.Flush();

        // Retire the replayed transactions (history, then a new generation), durably before the bit goes.
        using (var journalFile = hostFiles(Qcow2JournalFiles.JournalPath(imagePath), new HostFileOptions(ReadOnly: false, Direct: false)))
        using (var journal = new MetadataJournal(journalFile, header.ClusterSize, read,
                   new JournalHistoryArchive(Qcow2JournalFiles.HistoryPath(imagePath), hostFiles, Qcow2JournalFiles.DefaultHistoryBytes),
                   Qcow2JournalFiles.DefaultCheckpointBytes))
        {
            journal.Reset();
        }

        var features = header.IncompatibleFeatures & ~Qcow2IncompatibleFeatures.NbdqcowJournal;
        Span<byte> field = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64BigEndian(field, (ulong)features);
        imageFile.Write(72, field);
        imageFile.Flush();
        return Qcow2Header.Read(imageFile);
    }

    /// <summary>A read-only view of the image with the committed journal laid over it (nothing is written).</summary>
    public static JournalOverlayFile Overlay(string imagePath, IHostFile imageFile, Qcow2Header header, HostFileFactory hostFiles, out int transactions)
    {
        var read = ReadCommitted(imagePath, imageFile, header, hostFiles);
        transactions = read.Transactions.Count;
        return new JournalOverlayFile(imageFile, header.ClusterSize, read.Transactions);
    }

    private static Qcow2FormatException Missing(Qcow2Header header, string journalPath, string what) =>
        new("incompatible_features", header.DescribeFeature(Qcow2FeatureKind.Incompatible, 40),
            $"the image's metadata journal {journalPath} {what}, and the tables in the image may be stale without it; restore the journal file next to the image");
}
