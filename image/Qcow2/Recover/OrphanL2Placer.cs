using NbdQcow.Image.Qcow2.Format;

namespace NbdQcow.Image.Qcow2.Recover;

/// <summary>
/// Decides, without guessing, the L1 slot of each orphan L2 table. qemu writes a new L2 table (and its data) before
/// the L1 entry that points at it, so after a lost L1 update the table is intact and only its slot is unknown.
/// Evidence, strongest first: a history source (journal) whose L1 once held the table; an old copy of the L1 table
/// still in the file; a snapshot mapping the same host clusters at the same positions of one slot (the table is
/// that slot's copy-on-write copy); and, failing those, the slot being the only empty one the table fits in.
/// A table is never placed when it maps a cluster the recovered view already uses or another orphan table also maps,
/// when its evidence points at a slot that already has a table, or when two tables want the same slot.
/// </summary>
internal static class OrphanL2Placer
{
    private const int MaxListedSlots = 64;

    /// <summary>A data target: compressed clusters may legitimately share a host cluster (several are packed into one).</summary>
    private sealed record Candidate(long Offset, List<(int Index, long HostCluster, bool Compressed)> Targets, int MaxIndex,
        int Standard, int Copied);

    public static OrphanL2Placement Place(DamagedImage image, L1View view, IReadOnlyList<long> tableOffsets,
        HostClusterBitmap viewData, Dictionary<long, long> snapshotGuestByHost, long guestClusters, List<CompressedStreamScan.KnownStream> streams)
    {
        var g = image.Geometry;
        var result = new OrphanL2Placement(image.FileClusters);
        var table = new byte[g.ClusterSize];
        var candidateSet = new HashSet<long>(tableOffsets);
        var candidates = new List<Candidate>();
        var staleCopyEvidence = new Dictionary<long, (long Slot, long CopyOffset)>();
        bool multiClusterCopyReported = false;
        foreach (long offset in tableOffsets)
        {
            image.ReadTable(offset, table);
            var targets = new List<(int, long, bool)>();
            int maxIndex = -1, standard = 0, copied = 0;
            bool pointsAtCandidate = false;
            for (int j = 0; j < g.L2Entries; j++)
            {
                var entry = image.GetL2Entry(table, j);
                if (entry.Raw == 0 && entry.Bitmap == 0) continue;
                maxIndex = j;
                if (entry.IsCompressed)
                {
                    var d = entry.Compressed(g.ClusterBits);
                    streams.Add(new CompressedStreamScan.KnownStream(d.HostOffset, d.CompressedLength, -1));
                    long end = Math.Min(d.HostOffset + d.CompressedLength, image.FileLength) - 1;
                    for (long hc = image.ClusterOf(d.HostOffset); hc <= image.ClusterOf(end); hc++)
                        targets.Add((j, hc, true));
                }
                else if (entry.HostOffset != 0)
                {
                    targets.Add((j, image.ClusterOf(entry.HostOffset), false));
                    if (candidateSet.Contains(entry.HostOffset)) pointsAtCandidate = true;
                    standard++;
                    if (entry.IsCopied) copied++;
                }
            }
            if (pointsAtCandidate)
            {
                // An L1 table copy whose L2 tables are now orphans: evidence, not a table of data.
                image.Report.StaleMetadataTables++;
                image.Report.OrphanL2Tables--;
                // One cluster of an L1 that spans several does not say which slots it holds (its first, its second...):
                // its entries name slots only when the whole L1 fits in one cluster.
                if (view.Slots > g.ClusterSize / 8)
                {
                    if (!multiClusterCopyReported)
                        image.Report.Notes.Add($"an old L1 table copy at 0x{offset:x} was not used as evidence: the L1 spans several clusters, so one cluster of it does not say which slots it holds");
                    multiClusterCopyReported = true;
                    continue;
                }
                for (int j = 0; j < g.ClusterSize / 8 && j < view.Slots; j++)
                {
                    var entry = new L1Entry(BigEndianTable.Get(table, j));
                    if (entry.IsAllocated && candidateSet.Contains(entry.L2TableOffset))
                        staleCopyEvidence.TryAdd(entry.L2TableOffset, (j, offset));
                }
                continue;
            }
            candidates.Add(new Candidate(offset, targets, maxIndex, standard, copied));
        }
        image.Report.OrphanL2Tables += tableOffsets.Count;
        var refcounts = new RefcountLookup(image);
        candidates = DropStaleTables(image, candidates, refcounts);

        var claimedTwice = new HostClusterBitmap(image.FileClusters);
        foreach (var c in candidates)
            foreach (var (_, host, compressed) in c.Targets)
                if (result.Claimed.Set(host) && !compressed) claimedTwice.Set(host);

        var historyEvidence = new Dictionary<long, (long Slot, long Sequence, string Source)>();
        foreach (var (slot, l2, sequence, source) in image.Overlay.L1Values(view.L1Offset, view.Slots))
            if (!historyEvidence.TryGetValue(l2, out var known) || known.Sequence < sequence)
                historyEvidence[l2] = (slot, sequence, source);

        var openSlots = new List<long>();
        for (long s = 0; s < view.Slots; s++)
            if (view.L2Offsets[s] == 0) openSlots.Add(s);

        var proposals = new List<(Candidate Candidate, long Slot, string Reason)>();
        foreach (var c in candidates)
        {
            var open = OpenSlotsFor(c, openSlots, g, guestClusters);
            long openCount = open.Count;
            int inUse = 0, shared = 0;
            foreach (var (_, host, compressed) in c.Targets)
            {
                if (compressed) continue;
                if (viewData.Get(host)) inUse++;
                if (claimedTwice.Get(host)) shared++;
            }
            string? refusal = inUse > 0 ? $"{inUse} of its clusters are mapped by the {view.Name} view already (a stale copy?)"
                : shared > 0 ? $"{shared} of its clusters are also mapped by another orphan L2 table" : null;

            (long Slot, string Reason)? evidence = null;
            if (historyEvidence.TryGetValue(c.Offset, out var h))
                evidence = (h.Slot, $"history {h.Source} (sequence {h.Sequence}) has L1 slot {h.Slot} pointing at it");
            else if (staleCopyEvidence.TryGetValue(c.Offset, out var copy))
                evidence = (copy.Slot, $"an old L1 table copy at 0x{copy.CopyOffset:x} has slot {copy.Slot} pointing at it");
            else if (SnapshotSlot(c, snapshotGuestByHost, g) is { } snap)
                evidence = (snap.Slot, $"{snap.Shared} of its clusters are mapped at the same positions of slot {snap.Slot} by a snapshot (it is that slot's copy-on-write copy)");
            else if (openCount == 1)
                evidence = (open[0], $"slot {open[0]} is the only L1 slot without an L2 table that it fits in");

            if (refusal is null && evidence is { } e && view.L2Offsets[e.Slot] != 0)
                refusal = $"{e.Reason}, but that slot already has an L2 table (0x{view.L2Offsets[e.Slot]:x})";
            if (refusal is null && evidence is { } e3 && view.PastEnd[e3.Slot] && !historyEvidence.ContainsKey(c.Offset))
                refusal = $"{e3.Reason}, but the {view.Name} L1 entry of that slot names a newer table past the end of the file (cut off): this one is older";
            if (refusal is null && evidence is { } e2 && !open.Contains(e2.Slot))
                refusal = $"{e2.Reason}, but its entries reach past the virtual size there";
            if (refusal is null && evidence is { } placed)
            {
                proposals.Add((c, placed.Slot, placed.Reason));
                continue;
            }
            var listed = evidence is { } ev ? new List<long> { ev.Slot } : open.Take(MaxListedSlots).ToList();
            result.Unplaced.Add(new OrphanL2Decision(c.Offset, c.Targets.Count, null, listed, evidence is null ? openCount : 1,
                refusal ?? (openCount == 0 ? "no L1 slot is free for it" : $"{openCount} free L1 slots could hold it; nothing tells which")));
        }

        foreach (var group in proposals.GroupBy(p => p.Slot))
        {
            var list = group.ToList();
            if (list.Count > 1)
            {
                // Two tables for one slot: one may be a freed table the refcounts and COPIED flags call stale.
                var live = list.Where(p => !list.Any(o => o.Candidate != p.Candidate && StaleAgainst(image, refcounts, p.Candidate, o.Candidate) is not null)).ToList();
                if (live.Count == 1)
                {
                    foreach (var p in list)
                        if (p.Candidate != live[0].Candidate)
                        {
                            MarkStale(image, p.Candidate, StaleAgainst(image, refcounts, p.Candidate, live[0].Candidate)!);
                            // It shares no data cluster with another candidate (else it was dropped earlier): its own go to lost+found.
                            foreach (var (_, host, compressed) in p.Candidate.Targets)
                                if (!compressed) result.Claimed.Clear(host);
                        }
                    list = live;
                }
            }
            if (list.Count == 1)
            {
                var (c, slot, reason) = list[0];
                result.PlacedBySlot[slot] = c.Offset;
                image.Report.OrphanDecisions.Add(new OrphanL2Decision(c.Offset, c.Targets.Count, slot, [slot], 1, reason));
                image.Report.OrphanL2TablesPlaced++;
                continue;
            }
            foreach (var (c, slot, reason) in list)
                result.Unplaced.Add(new OrphanL2Decision(c.Offset, c.Targets.Count, null, [slot], 1,
                    $"{reason}, but {list.Count - 1} other orphan table(s) claim slot {slot} too"));
        }
        image.Report.OrphanDecisions.AddRange(result.Unplaced);
        return result;
    }

    /// <summary>
    /// Orphan tables that map the same data clusters: when the evidence says one of them is stale (a freed table
    /// still in the file, e.g. a deleted snapshot's), it is dropped so the live one can be placed. Its own clusters
    /// are not claimed, so the scan's lost+found still keeps them.
    /// </summary>
    private static List<Candidate> DropStaleTables(DamagedImage image, List<Candidate> candidates, RefcountLookup refcounts)
    {
        var owner = new Dictionary<long, int>();
        var pairs = new HashSet<(int, int)>();
        for (int i = 0; i < candidates.Count; i++)
            foreach (var (_, host, compressed) in candidates[i].Targets)
            {
                if (compressed) continue;
                if (!owner.TryAdd(host, i) && owner[host] != i) pairs.Add((owner[host], i));
            }
        var stale = new HashSet<int>();
        if (image.RefcountsConsistent)
        {
            // qemu (and this project) make a new table's refcount durable before the table itself, so a lost live
            // table keeps refcount >= 1; a refcount-0 table beside it was freed (a deleted snapshot's, a COW original).
            int live = candidates.FindIndex(c => refcounts.Get(image.ClusterOf(c.Offset)) >= 1);
            if (live >= 0)
                for (int i = 0; i < candidates.Count; i++)
                    if (refcounts.Get(image.ClusterOf(candidates[i].Offset)) == 0 && stale.Add(i))
                        MarkStale(image, candidates[i], $"stale: its cluster has refcount 0 on disk (freed) while the refcounts agree with the tables " +
                            $"and orphan L2 table 0x{candidates[live].Offset:x} has refcount {refcounts.Get(image.ClusterOf(candidates[live].Offset))} " +
                            "(a lost live table keeps the refcount written before it)");
        }
        foreach (var (a, b) in pairs)
        {
            if (stale.Contains(a) || stale.Contains(b)) continue;
            if (StaleAgainst(image, refcounts, candidates[a], candidates[b]) is { } whyA) { if (stale.Add(a)) MarkStale(image, candidates[a], whyA); }
            else if (StaleAgainst(image, refcounts, candidates[b], candidates[a]) is { } whyB) { if (stale.Add(b)) MarkStale(image, candidates[b], whyB); }
        }
        return candidates.Where((_, i) => !stale.Contains(i)).ToList();
    }

    /// <summary>Why <paramref name="table"/> is stale next to <paramref name="other"/>, or null when the evidence does not say.</summary>
    private static string? StaleAgainst(DamagedImage image, RefcountLookup refcounts, Candidate table, Candidate other)
    {
        if (image.RefcountsConsistent)
        {
            ulong? mine = refcounts.Get(image.ClusterOf(table.Offset)), theirs = refcounts.Get(image.ClusterOf(other.Offset));
            if (mine == 0 && theirs >= 1)
                return $"stale: its cluster has refcount 0 on disk (freed, e.g. a deleted snapshot's table) while orphan L2 table 0x{other.Offset:x}, " +
                    $"which competes with it, has refcount {theirs}";
            if (mine != theirs) return null; // refcounts that point the other way (or nowhere) are not overruled by flags
        }
        if (table.Standard > 0 && table.Copied == 0 && other.Standard > 0 && other.Copied == other.Standard)
            return $"stale: none of its {table.Standard} data entries has the COPIED flag (it was shared with a snapshot) while every entry of " +
                $"orphan L2 table 0x{other.Offset:x}, which competes with it, has it";
        return null;
    }

    private static void MarkStale(DamagedImage image, Candidate table, string reason)
    {
        image.Report.StaleL2Tables++;
        image.Report.OrphanDecisions.Add(new OrphanL2Decision(table.Offset, table.Targets.Count, null, [], 0, reason + "; not placed, not saved (its clusters are)"));
    }

    /// <summary>Empty slots where every entry of the table maps a guest cluster inside the virtual size.</summary>
    private static List<long> OpenSlotsFor(Candidate c, List<long> openSlots, Qcow2Geometry g, long guestClusters)
    {
        if (openSlots.Count == 0) return openSlots;
        long last = openSlots[^1];
        bool lastFits = (last << g.L2Bits) + c.MaxIndex < guestClusters;
        return lastFits ? openSlots : openSlots.GetRange(0, openSlots.Count - 1);
    }

    /// <summary>The one slot at whose positions a snapshot maps this table's host clusters, when all such clusters agree.</summary>
    private static (long Slot, int Shared)? SnapshotSlot(Candidate c, Dictionary<long, long> snapshotGuestByHost, Qcow2Geometry g)
    {
        long slot = -1;
        int shared = 0;
        foreach (var (index, host, compressed) in c.Targets)
        {
            if (compressed || !snapshotGuestByHost.TryGetValue(host, out long guestCluster)) continue;
            long s = guestCluster >> g.L2Bits;
            if ((guestCluster & (g.L2Entries - 1)) != index || (slot >= 0 && s != slot)) return null;
            slot = s;
            shared++;
        }
        return shared > 0 ? (slot, shared) : null;
    }
}
