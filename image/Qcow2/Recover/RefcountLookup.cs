using NbdQcow.Image.Qcow2.Format;

namespace NbdQcow.Image.Qcow2.Recover;

/// <summary>
/// Reads on-disk refcounts of single host clusters, for the report only (recovery never relies on them): an orphan
/// cluster the refcounts call allocated was most likely lost; one they call free may be the leftover of a freed
/// cluster, or data whose refcount update was lost too. Null when the refcount structure cannot say.
/// </summary>
internal sealed class RefcountLookup
{
    private readonly DamagedImage _image;
    private readonly ulong[] _table = [];
    private readonly byte[] _block;
    private long _cachedBlock = -1;

    public RefcountLookup(DamagedImage image)
    {
        _image = image;
        _block = new byte[image.Geometry.ClusterSize];
        var h = image.Header;
        long offset = (long)Math.Min(h.RefcountTableOffset, long.MaxValue);
        long bytes = (long)h.RefcountTableClusters << image.Geometry.ClusterBits;
        if (h.RefcountTableClusters > 0 && bytes <= Qcow2HeaderValidator.MaxRefcountTableBytes && image.IsPlausibleTable(offset, bytes))
            _table = BigEndianTable.Read(image.File, offset, (int)(bytes / 8));
    }

    public ulong? Get(long hostCluster)
    {
        if (_table.Length == 0) return null;
        var g = _image.Geometry;
        long index = hostCluster >> g.RefcountBlockBits;
        if (index >= _table.Length) return 0;
        ulong raw = _table[index];
        if (raw == 0) return 0;
        long block = (long)(raw & L1Entry.OffsetMask);
        if ((raw & ~(ulong)L1Entry.OffsetMask) != 0 || !_image.IsPlausibleTable(block, g.ClusterSize)) return null;
        if (_cachedBlock != block)
        {
            _image.File.Read(block, _block);
            _cachedBlock = block;
        }
        return RefcountBlockCodec.Get(_block, (int)(hostCluster & (g.RefcountBlockEntries - 1)), g.RefcountOrder);
    }

    /// <summary>Words for the report: "refcount 1 (allocated)", "refcount 0 (free)", "refcount unknown".</summary>
    public string Describe(long hostCluster) => Get(hostCluster) switch
    {
        null => "refcount unknown (refcount structure damaged)",
        0 => "refcount 0 on disk (free: a freed cluster's leftover, or its refcount update was lost too)",
        var n => $"refcount {n} on disk (allocated, yet no table maps it: most likely lost)",
    };
}
