using NbdQcow.Image.Qcow2.Format;

namespace NbdQcow.Image.Qcow2.Recover;

/// <summary>
/// Host clusters (or compressed streams) that two or more guest clusters of the recovered view claim. qcow2 never
/// maps one host cluster at two guest offsets of one view, so all but one claim are wrong (a misdirected table write
/// after a crash does this); writing the data at every claimant would invent data. A claim is kept only when the
/// evidence names it (refcount 1 and the only claimant with the COPIED flag); otherwise no claimant gets the data,
/// it goes to lost+found with every candidate guest offset, and the conflict is reported.
/// </summary>
internal sealed class MappingConflicts
{
    /// <summary>One contested host cluster or compressed stream and the guest clusters that claim it.</summary>
    public sealed record Conflict(long HostOffset, L2Entry Entry, List<long> GuestClusters, long? Winner, string Reason);

    private readonly HashSet<long> _skipped = new();

    public List<Conflict> Conflicts { get; } = new();

    /// <summary>Whether the guest cluster must not be written from its mapping (it lost or nothing decided).</summary>
    public bool Skips(long guestCluster) => _skipped.Count > 0 && _skipped.Contains(guestCluster);

    public static MappingConflicts Find(DamagedImage image, L1View view)
    {
        var g = image.Geometry;
        var result = new MappingConflicts();
        var seen = new HostClusterBitmap(image.FileClusters);
        var twice = new HashSet<long>();
        var streamStarts = new List<long>();
        Walk(image, view, (guest, entry) =>
        {
            if (entry.IsCompressed) streamStarts.Add(entry.Compressed(g.ClusterBits).HostOffset);
            else if (seen.Set(image.ClusterOf(entry.HostOffset))) twice.Add(entry.HostOffset);
        });
        streamStarts.Sort();
        for (int i = 1; i < streamStarts.Count; i++)
            if (streamStarts[i] == streamStarts[i - 1]) twice.Add(streamStarts[i]);
        if (twice.Count == 0) return result;

        var claims = new Dictionary<long, (L2Entry Entry, List<(long Guest, bool Copied)> Claimants)>();
        Walk(image, view, (guest, entry) =>
        {
            long key = entry.IsCompressed ? entry.Compressed(g.ClusterBits).HostOffset : entry.HostOffset;
            if (!twice.Contains(key)) return;
            if (!claims.TryGetValue(key, out var c)) claims[key] = c = (entry, new());
            c.Claimants.Add((guest, !entry.IsCompressed && entry.IsCopied));
        });
        var refcounts = new RefcountLookup(image);
        foreach (var (host, (entry, claimants)) in claims)
        {
            var guests = claimants.Select(c => c.Guest).ToList();
            string where = string.Join(", ", guests.Select(x => $"0x{x << g.ClusterBits:x}"));
            string what = entry.IsCompressed ? $"compressed stream at 0x{host:x}" : $"host cluster 0x{host:x}";
            long? winner = null;
            string reason;
            ulong? refcount = image.RefcountsConsistent ? refcounts.Get(image.ClusterOf(host)) : null;
            var copied = claimants.Where(c => c.Copied).ToList();
            if (refcount == 1 && copied.Count == 1)
            {
                winner = copied[0].Guest;
                reason = $"{what} is claimed by guest clusters at {where}; its refcount is 1 and only guest 0x{winner << g.ClusterBits:x} has the COPIED flag: placed there only";
                image.Report.Damage("conflict", reason);
            }
            else
            {
                reason = $"{what} is claimed by guest clusters at {where} (refcount {(refcount?.ToString() ?? "unknown")}, " +
                    $"{copied.Count} with the COPIED flag); nothing tells which is true: placed at none, saved to lost+found with every candidate";
                image.Report.Loss("conflict", reason, guests.Count);
                image.Report.ConflictingClusters++;
            }
            foreach (long guest in guests)
                if (guest != winner) result._skipped.Add(guest);
            result.Conflicts.Add(new Conflict(host, entry, guests, winner, reason));
        }
        result.Conflicts.Sort((a, b) => a.GuestClusters[0].CompareTo(b.GuestClusters[0]));
        return result;
    }

    /// <summary>Calls <paramref name="visit"/> for every valid data mapping (standard or compressed) of the view.</summary>
    private static void Walk(DamagedImage image, L1View view, Action<long, L2Entry> visit)
    {
        var g = image.Geometry;
        var table = new byte[g.ClusterSize];
        for (long slot = 0; slot < view.Slots; slot++)
        {
            long l2 = view.L2Offsets[slot];
            if (l2 == 0) continue;
            image.ReadTable(l2, table);
            for (int j = 0; j < g.L2Entries; j++)
            {
                var entry = image.GetL2Entry(table, j);
                if (!entry.IsCompressed && entry.HostOffset == 0) continue;
                if (image.L2EntryProblem(entry) is not null) continue;
                visit((slot << g.L2Bits) + j, entry);
            }
        }
    }
}
