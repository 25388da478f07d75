namespace NbdQcow.Image.Qcow2.Refcounts;

/// <summary>
/// Which host clusters hold metadata (header, L1, refcount table and blocks, L2 tables, snapshot and bitmap
/// tables): qemu's overlap check. Every data write is checked against it before it reaches the file.
/// A sparse paged bitmap keeps memory proportional to the clusters actually used. Thread-safe.
/// </summary>
public sealed class Qcow2MetadataMap
{
    private const int PageBits = 12; // 4096 clusters per page
    private const int WordsPerPage = (1 << PageBits) / 64;

    private readonly Lock _lock = new();
    private readonly Dictionary<long, ulong[]> _pages = new();
    private readonly int _clusterBits;

    public Qcow2MetadataMap(int clusterBits) => _clusterBits = clusterBits;

    /// <summary>Marks every cluster touched by [hostOffset, hostOffset+length) as metadata.</summary>
    public void Add(long hostOffset, long length) => Update(hostOffset, length, true);

    public void Remove(long hostOffset, long length) => Update(hostOffset, length, false);

    /// <summary>True when any cluster touched by [hostOffset, hostOffset+length) holds metadata.</summary>
    public bool Overlaps(long hostOffset, long length)
    {
        if (length <= 0) return false;
        long first = hostOffset >> _clusterBits;
        long last = (hostOffset + length - 1) >> _clusterBits;
        lock (_lock)
        {
            for (long cluster = first; cluster <= last; cluster++)
            {
                if (!_pages.TryGetValue(cluster >> PageBits, out var page))
                {
                    cluster |= (1L << PageBits) - 1; // skip the rest of an empty page
                    continue;
                }
                int bit = (int)(cluster & ((1 << PageBits) - 1));
                if ((page[bit >> 6] & (1UL << (bit & 63))) != 0) return true;
            }
        }
        return false;
    }

    public bool IsMetadata(long hostOffset) => Overlaps(hostOffset, 1);

    /// <summary>Index of the last cluster that holds metadata, or -1 when none.</summary>
    public long LastCluster()
    {
        lock (_lock)
        {
            long last = -1;
            foreach (var (pageIndex, page) in _pages)
            {
                for (int word = page.Length - 1; word >= 0; word--)
                {
                    if (page[word] == 0) continue;
                    long cluster = (pageIndex << PageBits) + word * 64 + 63 - System.Numerics.BitOperations.LeadingZeroCount(page[word]);
                    last = Math.Max(last, cluster);
                    break;
                }
            }
            return last;
        }
    }

    private void Update(long hostOffset, long length, bool set)
    {
        if (length <= 0) return;
        long first = hostOffset >> _clusterBits;
        long last = (hostOffset + length - 1) >> _clusterBits;
        lock (_lock)
        {
            for (long cluster = first; cluster <= last; cluster++)
            {
                long pageIndex = cluster >> PageBits;
                if (!_pages.TryGetValue(pageIndex, out var page))
                {
                    if (!set) continue;
                    page = new ulong[WordsPerPage];
                    _pages.Add(pageIndex, page);
                }
                int bit = (int)(cluster & ((1 << PageBits) - 1));
                if (set) page[bit >> 6] |= 1UL << (bit & 63);
                else page[bit >> 6] &= ~(1UL << (bit & 63));
            }
        }
    }
}
