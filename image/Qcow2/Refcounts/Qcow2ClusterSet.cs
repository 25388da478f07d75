namespace NbdQcow.Image.Qcow2.Refcounts;

/// <summary>
/// A set of host cluster indexes, kept as 4096-bit chunks created on first use: its memory is bounded by the span of
/// clusters added (one bit each), not by how often they are added.
/// </summary>
public sealed class Qcow2ClusterSet
{
    private const int ChunkBits = 12;
    private readonly Dictionary<long, ulong[]> _chunks = new();

    /// <summary>Number of clusters in the set.</summary>
    public long Count { get; private set; }

    /// <summary>One past the highest cluster ever added (0 when none).</summary>
    public long EndCluster { get; private set; }

    public void Add(long cluster)
    {
        if (!_chunks.TryGetValue(cluster >> ChunkBits, out var chunk))
            _chunks[cluster >> ChunkBits] = chunk = new ulong[(1 << ChunkBits) / 64];
        int bit = (int)(cluster & ((1 << ChunkBits) - 1));
        ulong mask = 1UL << (bit & 63);
        if ((chunk[bit >> 6] & mask) != 0) return;
        chunk[bit >> 6] |= mask;
        Count++;
        EndCluster = Math.Max(EndCluster, cluster + 1);
    }

    public bool Contains(long cluster)
    {
        if (Count == 0 || !_chunks.TryGetValue(cluster >> ChunkBits, out var chunk)) return false;
        int bit = (int)(cluster & ((1 << ChunkBits) - 1));
        return (chunk[bit >> 6] & (1UL << (bit & 63))) != 0;
    }

    /// <summary>The last cluster of [<paramref name="start"/>, +<paramref name="count"/>) in the set, or -1.</summary>
    public long LastIn(long start, long count)
    {
        if (Count == 0) return -1;
        for (long c = start + count - 1; c >= start; c--)
            if (Contains(c)) return c;
        return -1;
    }
}
