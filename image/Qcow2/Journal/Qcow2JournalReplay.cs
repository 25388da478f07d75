using System.Buffers.Binary;
using NbdQcow.Cache;
using NbdQcow.Cache.Journal;
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

    /// <summary>Reads the committed transactions of the image's journal; refuses when the journal is gone or unreadable.</summary>
    public static JournalReadResult ReadCommitted(string imagePath, Qcow2Header header, HostFileFactory hostFiles)
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
        return read;
    }

    /// <summary>Replays on disk and returns the header as it is afterwards (journal bit cleared).</summary>
    public static Qcow2Header ReplayOnDisk(string imagePath, IHostFile imageFile, Qcow2Header header, HostFileFactory hostFiles)
    {
        var read = ReadCommitted(imagePath, header, hostFiles);
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
        var read = ReadCommitted(imagePath, header, hostFiles);
        transactions = read.Transactions.Count;
        return new JournalOverlayFile(imageFile, header.ClusterSize, read.Transactions);
    }

    private static Qcow2FormatException Missing(Qcow2Header header, string journalPath, string what) =>
        new("incompatible_features", header.DescribeFeature(Qcow2FeatureKind.Incompatible, 40),
            $"the image's metadata journal {journalPath} {what}, and the tables in the image may be stale without it; restore the journal file next to the image");
}
