namespace NbdQcow.Image.Qcow2.Recover;

/// <summary>
/// Walks the L2 tables of one view and marks every host cluster a valid entry references, so the scan that follows
/// knows which clusters are unreferenced. Damaged entries are reported here, once per view.
/// </summary>
internal static class ViewReferenceMarker
{
    /// <param name="viewData">When given, marks the data clusters the view maps (and its damaged entries count as losses).</param>
    /// <param name="sharedWith">Tables this view shares with that one at the same slot are skipped (already walked).</param>
    /// <param name="streams">When given, collects every compressed stream the view maps.</param>
    /// <param name="guestClusterByHost">When given, records which guest cluster first mapped each host data cluster.</param>
    public static void Mark(DamagedImage image, L1View view, HostClusterBitmap referenced, HostClusterBitmap? viewData,
        Dictionary<long, long>? guestClusterByHost, L1View? sharedWith = null, List<CompressedStreamScan.KnownStream>? streams = null)
    {
        var g = image.Geometry;
        var table = new byte[g.ClusterSize];
        for (long slot = 0; slot < view.Slots; slot++)
        {
            long l2 = view.L2Offsets[slot];
            if (l2 == 0 || (sharedWith is not null && sharedWith.L2At(slot) == l2)) continue; // a table shared with the active view is walked once
            image.ReadTable(l2, table);
            for (int j = 0; j < g.L2Entries; j++)
            {
                var entry = image.GetL2Entry(table, j);
                if (entry.Raw == 0 && entry.Bitmap == 0) continue;
                long guestCluster = (slot << g.L2Bits) + j;
                string? problem = image.L2EntryProblem(entry);
                if (problem is not null)
                {
                    string message = $"{view.Name} L2 table 0x{l2:x} entry {j} (guest 0x{guestCluster << g.ClusterBits:x}) = 0x{entry.Raw:x16}: {problem}; skipped";
                    if (viewData is not null)
                    {
                        image.Report.Loss("l2-entry", message);
                        image.Report.Range(guestCluster << g.ClusterBits, g.ClusterSize, "lost", message);
                    }
                    else image.Report.Damage("l2-entry", message);
                    continue;
                }
                if (entry.IsCompressed)
                {
                    var d = entry.Compressed(g.ClusterBits);
                    streams?.Add(new CompressedStreamScan.KnownStream(d.HostOffset, d.CompressedLength, guestCluster));
                    long end = Math.Min(d.HostOffset + d.CompressedLength, image.FileLength);
                    for (long c = image.ClusterOf(d.HostOffset); c <= image.ClusterOf(end - 1); c++)
                        referenced.Set(c);
                    continue;
                }
                if (entry.HostOffset == 0) continue;
                long host = image.ClusterOf(entry.HostOffset);
                referenced.Set(host);
                viewData?.Set(host); // a cluster mapped twice is a conflict, decided (or not) by MappingConflicts
                if (guestClusterByHost is not null)
                    guestClusterByHost.TryAdd(host, guestCluster);
            }
        }
    }
}
