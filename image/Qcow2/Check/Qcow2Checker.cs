using NbdQcow.Cache;
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
        using var file = factory(path, new HostFileOptions(ReadOnly: repair == Qcow2RepairMode.None, Direct: false));
        return Check(file, repair);
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
            if (!result.IsClean || dirty) scan.RebuildRefcounts();
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
