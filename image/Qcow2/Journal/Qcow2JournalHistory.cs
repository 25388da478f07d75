using NbdQcow.Cache.Journal;
using NbdQcow.HostIo;

namespace NbdQcow.Image.Qcow2.Journal;

/// <summary>
/// Read API over an image's journal history for recovery tools: every committed transaction still known, oldest
/// first — the older archive (IMAGE.journal.history.1), the archive (IMAGE.journal.history), then the live journal
/// (IMAGE.journal, committed but maybe not yet in place). A transaction found twice (a crash between archiving and
/// resetting) is listed once. To see the mapping tables as they were after transaction N, start from the current
/// image and lay over it, in order, every table image of transactions up to N (later images of a table win).
/// Reads only; nothing is written. Damaged archive stretches are skipped; the live journal stops at its first
/// bad transaction, as replay does.
/// </summary>
public static class Qcow2JournalHistory
{
    /// <summary>The journal files of <paramref name="imagePath"/> in the order they are read (those that exist).</summary>
    public static IReadOnlyList<string> Files(string imagePath)
    {
        string history = Qcow2JournalFiles.HistoryPath(imagePath);
        var files = new List<string>();
        foreach (var path in new[] { history + ".1", history, Qcow2JournalFiles.JournalPath(imagePath) })
            if (System.IO.File.Exists(path)) files.Add(path);
        return files;
    }

    /// <summary>Enumerates the transactions one file at a time (a file's transactions are held in memory while it is read).</summary>
    public static IEnumerable<Qcow2JournalHistoryEntry> Enumerate(string imagePath, HostFileFactory? hostFiles = null)
    {
        var factory = hostFiles ?? HostFile.Open;
        string live = Qcow2JournalFiles.JournalPath(imagePath);
        ulong last = 0;
        bool any = false;
        foreach (var path in Files(imagePath))
        {
            var transactions = new List<JournalTransaction>();
            using (var file = factory(path, new HostFileOptions(ReadOnly: true, Direct: false)))
            {
                var header = JournalReader.ReadHeader(file, out _);
                if (header is null) continue;
                JournalReader.Enumerate(file, header, transactions.Add, out _);
            }
            bool inPlace = path != live;
            foreach (var transaction in transactions)
            {
                if (any && transaction.Sequence <= last) continue;
                any = true;
                last = transaction.Sequence;
                yield return new Qcow2JournalHistoryEntry(transaction, path, inPlace);
            }
        }
    }

    /// <summary>All of <see cref="Enumerate"/> as a list.</summary>
    public static IReadOnlyList<Qcow2JournalHistoryEntry> Read(string imagePath, HostFileFactory? hostFiles = null) =>
        Enumerate(imagePath, hostFiles).ToList();
}
