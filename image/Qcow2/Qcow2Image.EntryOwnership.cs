using NbdQcow.Image.Qcow2.Format;

namespace NbdQcow.Image.Qcow2;

// Entries that name clusters nothing owns. The allocator hands out every cluster whose refcount is 0, so an L2
// entry naming one (a crafted or damaged image: past the end of the file, or a hole the refcounts call free) would,
// once the allocator gives that cluster to another offset, read that offset's data: a wrong disk, silently. qemu-img
// check calls such a reference an error; here, on a writable image, each L2 table is checked the first time this
// open reads it: an entry naming a cluster with refcount 0, a cluster past the end the refcounts counted at open, or
// a cluster the allocator handed out since open (a table not read since open cannot have been given it) is damage.
// Its guest cluster then fails every request with EIO, a free cluster it names is never handed out, one line is
// reported and the image is marked corrupt. Cost: one pass over a table's entries (refcount lookups through the
// metadata cache) once per table per open; per request, one array read.
public sealed partial class Qcow2Image
{
    private const byte L2Unchecked = 0;
    private const byte L2Checked = 1;
    private const byte L2HasDamagedEntries = 2;
    private const byte L2Damaged = 3;

    /// <summary>Beyond this many damaged entries in one table, the whole table's range fails (bounds the memory kept).</summary>
    private const int MaxDamagedEntriesPerTable = 64;

    /// <summary>
    /// Beyond this many damaged entries remembered for the whole image, a table with any more fails as a whole: a
    /// crafted image with damage in every table, read end to end, cannot make the kept set grow without bound.
    /// </summary>
    private const int MaxDamagedEntriesRemembered = 4096;

    /// <summary>Per L1 index: whether its L2 table was checked since open (writable images without a data file; else null).</summary>
    private byte[]? _l2Ownership;

    /// <summary>Guest cluster indexes whose entries name clusters nothing owns, with the problem (tables in state <see cref="L2HasDamagedEntries"/>).</summary>
    private readonly Dictionary<long, string> _unownedEntryClusters = new();

    private void StartOwnershipChecks()
    {
        if (!UsesExternalDataFile) _l2Ownership = new byte[L1Table.Length];
    }

    /// <summary>A table the allocator just created (or copied from a checked one): nothing in it to check.</summary>
    private void MarkL2Checked(long l1Index)
    {
        if (_l2Ownership is { } states && states[l1Index] == L2Unchecked) states[l1Index] = L2Checked;
    }

    /// <summary>
    /// Checks the L2 table of <paramref name="l1Index"/> the first time this open reads it (under the metadata lock).
    /// Reports damaged entries once; the requests that meet them fail in <see cref="CheckEntryOwnership"/>.
    /// </summary>
    private void EnsureL2OwnershipChecked(long l1Index, ReadOnlySpan<byte> table)
    {
        if (_l2Ownership is not { } states || states[l1Index] != L2Unchecked) return;
        var g = Geometry;
        var refcounts = Refcounts;
        long tableGuest = l1Index * g.L2Coverage;
        int damaged = 0, remembered = 0;
        string? first = null;
        for (int i = 0; i < g.L2Entries; i++)
        {
            var entry = g.ExtendedL2
                ? new L2Entry(BigEndianTable.Get(table, i * 2), BigEndianTable.Get(table, i * 2 + 1))
                : new L2Entry(BigEndianTable.Get(table, i));
            long host = entry.IsCompressed ? entry.Compressed(g.ClusterBits).HostOffset : entry.HostOffset;
            if (host == 0 || entry.Problem(g, UsesExternalDataFile) is not null) continue; // no cluster, or refused where used
            long cluster = host >> g.ClusterBits;
            string? problem = OwnershipProblem(refcounts, cluster);
            if (problem is null) continue;
            long guest = tableGuest + ((long)i << g.ClusterBits);
            first ??= $"L2 entry 0x{entry.Raw:x16} for guest offset 0x{guest:x}: {problem}";
            if (++damaged <= MaxDamagedEntriesPerTable && _unownedEntryClusters.Count < MaxDamagedEntriesRemembered)
            {
                _unownedEntryClusters[guest >> g.ClusterBits] = problem;
                remembered++;
            }
        }
        // Every damaged entry remembered, or the whole table fails: an entry left out would read what it names.
        bool eachRemembered = remembered == damaged;
        states[l1Index] = damaged == 0 ? L2Checked : eachRemembered ? L2HasDamagedEntries : L2Damaged;
        if (damaged == 0) return;
        string scope = damaged == 1 && eachRemembered ? "" : eachRemembered
            ? $" ({damaged} entries of this L2 table are damaged, each fails with EIO)"
            : $" ({damaged} entries of this L2 table are damaged: its whole guest range 0x{tableGuest:x}+0x{g.L2Coverage:x} fails with EIO)";
        _ = ReportDamage($"qcow2 image {Path} is corrupt: {first}{scope}");
    }

    /// <summary>Why an entry of a table first read now may not name <paramref name="cluster"/>, or null. Quarantines a free one.</summary>
    private static string? OwnershipProblem(Refcounts.Qcow2Refcounts refcounts, long cluster)
    {
        // Cut off the file (counted at open, gone now): reported where used, and never handed out.
        if (cluster >= refcounts.FileEndCluster && cluster < refcounts.CountedEndClusterAtOpen) return null;
        if (cluster >= refcounts.CountedEndClusterAtOpen)
        {
            if (refcounts.GetRefcount(cluster << refcounts.ClusterBits) == 0) refcounts.Quarantine(cluster);
            return $"host cluster 0x{cluster << refcounts.ClusterBits:x} lies past the end of the image when it was opened " +
                   $"(0x{refcounts.CountedEndClusterAtOpen << refcounts.ClusterBits:x}) and has no refcount: nothing was stored there";
        }
        if (refcounts.WasHandedOutSinceOpen(cluster))
            return $"host cluster 0x{cluster << refcounts.ClusterBits:x} was free when the image was opened and now holds other data";
        if (refcounts.GetRefcount(cluster << refcounts.ClusterBits) == 0)
        {
            refcounts.Quarantine(cluster);
            return $"host cluster 0x{cluster << refcounts.ClusterBits:x} has refcount 0 (free), yet this entry uses it";
        }
        return null;
    }

    /// <summary>True when the entry mapping <paramref name="guestOffset"/> was found damaged (a run being extended stops before it).</summary>
    private bool IsUnownedEntry(long guestOffset)
    {
        if (_l2Ownership is not { } states) return false;
        long l1Index = Geometry.L1Index(guestOffset);
        if (l1Index >= states.Length || states[l1Index] < L2HasDamagedEntries) return false;
        return states[l1Index] == L2Damaged || _unownedEntryClusters.ContainsKey(guestOffset >> Geometry.ClusterBits);
    }

    /// <summary>Fails a request that meets an entry found damaged by <see cref="EnsureL2OwnershipChecked"/>.</summary>
    private void CheckEntryOwnership(L2Entry entry, long guestOffset)
    {
        if (_l2Ownership is not { } states) return;
        long l1Index = Geometry.L1Index(guestOffset);
        if (l1Index >= states.Length) return;
        byte state = states[l1Index];
        if (state < L2HasDamagedEntries) return;
        if (state == L2Damaged)
            throw DamagedEntry(entry, guestOffset, "its L2 table names too many clusters nothing owns to trust any of it");
        if (_unownedEntryClusters.TryGetValue(guestOffset >> Geometry.ClusterBits, out string? problem))
            throw DamagedEntry(entry, guestOffset, problem);
    }
}
