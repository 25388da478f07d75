using System.Buffers.Binary;
using NbdQcow.Cache;
using NbdQcow.Cache.Journal;
using NbdQcow.Cache.Metadata;
using NbdQcow.HostIo;
using NbdQcow.Image.Qcow2.Format;
using NbdQcow.Image.Qcow2.Journal;

namespace NbdQcow.Image.Qcow2;

// The metadata journal (--journal): the sidecar IMAGE.journal takes every durable flush's dirty tables in one
// append + fdatasync; checkpoints (journal size bound, clean close, reuse of a freed table cluster) write them in
// place. While committed changes are not all in place the header carries the NbdqcowJournal incompatible bit
// (named "nbdqcow journal" in the feature-name table), so qemu refuses the image instead of reading stale tables.
public sealed partial class Qcow2Image
{
    private MetadataJournal? _journal;
    /// <summary>With a journal: how tables reach the disk (commit, then in place); null for ordered flushing.</summary>
    private JournalTableWriter? _journalWriter;

    /// <summary>The journal, or null when the image is not served with one.</summary>
    public MetadataJournal? MetadataJournal => _journal;

    /// <summary>Committed transactions laid over the file in memory (read-only open of an image with a pending journal); 0 otherwise.</summary>
    public int PendingJournalTransactions { get; private set; }

    /// <summary>
    /// Called by Open right after the header is read: an image with the journal bit is replayed (read-write) or
    /// gets the journal laid over it in memory (read-only). Returns the file and header to continue with.
    /// </summary>
    private static (IHostFile File, Qcow2Header Header, int Overlaid) ApplyPendingJournal(string path, IHostFile file, Qcow2Header header,
        bool readOnly, HostFileFactory hostFiles)
    {
        if (!Qcow2JournalReplay.HasPendingJournal(header)) return (file, header, 0);
        if (readOnly)
        {
            var overlay = Qcow2JournalReplay.Overlay(path, file, header, hostFiles, out int transactions);
            return (overlay, header, transactions);
        }
        return (file, Qcow2JournalReplay.ReplayOnDisk(path, file, header, hostFiles), 0);
    }

    /// <summary>Called at the end of InitializeWriting when the journal is asked for.</summary>
    private void StartJournal(MetadataTableCache cache)
    {
        if (Options.CacheMode == CacheMode.Unsafe)
            throw new ArgumentException($"qcow2 image {Path}: --journal with --cache unsafe is refused: unsafe never syncs on request, so the journal would only add writes (use --cache writeback --journal)");
        if (Header.Version < 3)
            throw new ArgumentException($"qcow2 image {Path}: --journal needs qcow2 version 3 (compat 1.1): version 2 has no incompatible feature bits to keep other programs from reading stale tables (upgrade with: qemu-img amend -o compat=1.1)");
        EnsureJournalFeatureName();
        string journalPath = Qcow2JournalFiles.JournalPath(Path);
        string historyPath = Qcow2JournalFiles.HistoryPath(Path);
        foreach (string own in (ReadOnlySpan<string>)[journalPath, historyPath, historyPath + ".1"])
            EnsureJournalFileOrNone(own);
        var file = HostFiles(journalPath, new HostFileOptions(ReadOnly: false, Direct: Options.CacheMode.UsesODirect(), Create: true));
        MetadataJournal? journal = null;
        try
        {
            JournalReadResult? previous = file.Length >= JournalFormat.BlockSize ? JournalReader.Read(file) : null;
            var history = new JournalHistoryArchive(Qcow2JournalFiles.HistoryPath(Path), HostFiles, Qcow2JournalFiles.DefaultHistoryBytes);
            journal = new MetadataJournal(file, Geometry.ClusterSize, previous, history,
                Options.JournalCheckpointBytes ?? Qcow2JournalFiles.DefaultCheckpointBytes, Options.TimeProvider);
            journal.Start();
            journal.BeforeFirstCommit = () => WriteJournalBit(set: true);
            journal.AfterReset = () => WriteJournalBit(set: false);
            _journalWriter = cache.AttachJournal(journal);
            _journal = journal;
        }
        catch
        {
            if (journal is not null) journal.Dispose();
            else file.Dispose();
            throw;
        }
    }

    /// <summary>
    /// The journal files are created, overwritten, appended to and rotated by name: a file already there must be one
    /// of ours (empty, or starting with the journal magic), never another file that happens to carry the name.
    /// </summary>
    private static void EnsureJournalFileOrNone(string path)
    {
        if (!System.IO.File.Exists(path)) return;
        if (!HostPath.IsRegularFile(path)) // a FIFO would block the read below
            throw new IOException($"{path} exists and is not an nbdqcow journal (not a regular file); refusing to use it");
        Span<byte> magic = stackalloc byte[8];
        int length;
        using (var existing = System.IO.File.OpenHandle(path, FileMode.Open, FileAccess.Read))
            length = RandomAccess.Read(existing, magic, 0);
        if (length > 0 && !magic[..length].SequenceEqual(JournalFormat.FileMagic[..length]))
            throw new IOException($"{path} exists and is not an nbdqcow journal; refusing to overwrite it (move it away, or serve without --journal)");
    }

    /// <summary>
    /// Sets (before the first commit of a generation: the image barrier that precedes the commit makes it durable)
    /// or clears (after a checkpoint reset the journal: synced here) the journal bit in the header.
    /// </summary>
    private void WriteJournalBit(bool set)
    {
        var features = set
            ? Header.IncompatibleFeatures | Qcow2IncompatibleFeatures.NbdqcowJournal
            : Header.IncompatibleFeatures & ~Qcow2IncompatibleFeatures.NbdqcowJournal;
        Span<byte> field = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64BigEndian(field, (ulong)features);
        File.Write(72, field);
        if (!set) File.Flush();
        Header.IncompatibleFeatures = features;
    }

    /// <summary>
    /// Adds "nbdqcow journal" to the header's feature-name table (once per image), so qemu-img names the bit when it
    /// refuses the image. Only the header's first 4 KiB change (one atomic sector under the crash model). Images whose
    /// first cluster cannot hold it (small clusters) go without the name: qemu still refuses the unknown bit.
    /// </summary>
    private void EnsureJournalFeatureName()
    {
        foreach (var name in Header.FeatureNames)
            if (name.Kind == Qcow2FeatureKind.Incompatible && name.Bit == 40) return;
        if (Header.FeatureNames.Count == 0) return; // qemu wrote none (or they did not fit): do not start a table
        // Changed in place: other parts (the refcount code) hold this header object.
        var entry = new Qcow2FeatureName(Qcow2FeatureKind.Incompatible, 40, Qcow2FeatureName.JournalFeatureName);
        Header.FeatureNames.Add(entry);
        var cluster = new byte[Geometry.ClusterSize];
        int used;
        try
        {
            used = Header.SerializeTo(cluster);
        }
        catch (Qcow2FormatException)
        {
            used = int.MaxValue;
        }
        if (used > 4096)
        {
            Header.FeatureNames.Remove(entry);
            return;
        }
        File.Write(0, cluster.AsSpan(0, Math.Min(4096, cluster.Length)));
        File.Flush();
    }
}
