using NbdQcow.HostIo;
using NbdQcow.Image.Qcow2.Format;

namespace NbdQcow.Image.Qcow2.Check;

/// <summary>
/// The project's own qcow2 consistency check: refcounts against references (active image, snapshots, bitmaps,
/// refcount structure), every mapping inside the file and off other metadata, COPIED flags; leaks counted apart
/// from corruptions. Optionally repairs leaks, or rebuilds the refcount structure (which also serves images left
/// dirty by lazy refcounts).
/// </summary>
public static class Qcow2Checker
{
    /// <summary>Largest image (in clusters of its file) checked: the reference counts live in memory.</summary>
    public const long MaxCheckedClusters = 1L << 28;

    public static Qcow2CheckResult Check(string path, Qcow2RepairMode repair = Qcow2RepairMode.None, HostFileFactory? hostFiles = null)
    {
        var factory = hostFiles ?? HostFile.Open;
        IHostFile file = factory(path, new HostFileOptions(ReadOnly: repair == Qcow2RepairMode.None, Direct: false));
        try
        {
            // A pending metadata journal holds the newest tables: a check without repair reads them laid over the
            // file (writing nothing); a repair replays them in place first, as opening the image read-write does.
            string? journalNote = null;
            var header = TryReadHeader(file);
            if (header is not null && Journal.Qcow2JournalReplay.HasPendingJournal(header))
            {
                if (repair == Qcow2RepairMode.None)
                {
                    file = Journal.Qcow2JournalReplay.Overlay(path, file, header, factory, out int transactions);
                    journalNote = $"The image has a pending nbdqcow journal ({transactions} committed transactions not yet in place); " +
                                  "they were applied in memory for this check. Open the image read-write (nbdqcow serve, or check --repair) to write them in place; until then qemu refuses the image.";
                }
                else
                {
                    int transactions = Journal.Qcow2JournalReplay.ReadCommitted(path, file, header, factory).Transactions.Count;
                    Journal.Qcow2JournalReplay.ReplayOnDisk(path, file, header, factory);
                    journalNote = $"The image's nbdqcow journal was replayed: {transactions} committed transactions written in place.";
                }
            }
            var result = Check(file, repair);
            result.JournalNote = journalNote;
            return result;
        }
        catch (Qcow2FormatException e)
        {
            return new Qcow2CheckResult { FatalError = e.Message };
        }
        finally
        {
            file.Dispose();
        }
    }

    private static Qcow2Header? TryReadHeader(IHostFile file)
    {
        try
        {
            return Qcow2Header.Read(file);
        }
        catch (Qcow2FormatException)
        {
            return null; // the scan reports it
        }
    }

    /// <summary>Checks (and optionally repairs) the qcow2 image in <paramref name="file"/>.</summary>
    public static Qcow2CheckResult Check(IHostFile file, Qcow2RepairMode repair = Qcow2RepairMode.None)
    {
        var result = Scan(file, out var header, out var scan);
        if (result.FatalError is not null || scan is null || header is null || repair == Qcow2RepairMode.None)
            return result;
        bool dirty = (header.IncompatibleFeatures & Qcow2IncompatibleFeatures.Dirty) != 0;
        if (repair == Qcow2RepairMode.Leaks)
        {
            if (result.Leaks == 0) return result;
            scan.RepairLeaks();
        }
        else
        {
            if (result.IsClean && !dirty && (header.IncompatibleFeatures & Qcow2IncompatibleFeatures.Corrupt) == 0) return result;
            if (!result.IsClean || dirty)
            {
                try
                {
                    scan.RebuildRefcounts();
                }
                catch (Qcow2FormatException e)
                {
                    // Refused before writing anything (e.g. entries past the end of a file cut short): the scan's
                    // findings stand, with the reason nothing was repaired.
                    result.FatalError = e.Message;
                    return result;
                }
            }
        }
        var after = Scan(file, out var afterHeader, out var afterScan);
        after.RepairedLeaks = Math.Max(0, result.Leaks - after.Leaks);
        after.RepairedCorruptions = Math.Max(0, result.Corruptions - after.Corruptions);
        if (repair == Qcow2RepairMode.All && after.Corruptions == 0 && after.FatalError is null && afterScan is not null)
            afterScan.ClearIncompatibleBits(Qcow2IncompatibleFeatures.Corrupt);
        return after;
    }

    private static Qcow2CheckResult Scan(IHostFile file, out Qcow2Header? header, out Qcow2ReferenceScan? scan)
    {
        var result = new Qcow2CheckResult();
        header = null;
        scan = null;
        try
        {
            header = Qcow2Header.Read(file);
            Qcow2HeaderValidator.EnsureSupported(header);
            Qcow2HeaderValidator.Validate(header, file.Length);
        }
        catch (Qcow2FormatException e)
        {
            result.FatalError = e.Message;
            return result;
        }
        scan = new Qcow2ReferenceScan(file, header, result);
        try
        {
            scan.Run();
        }
        catch (Qcow2FormatException e)
        {
            result.FatalError = e.Message;
        }
        return result;
    }
}
