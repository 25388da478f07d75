using NbdQcow.Image.Qcow2.Format;

namespace NbdQcow.Image.Qcow2.Recover;

/// <summary>
/// Tells what an unreferenced host cluster is. The L2 test is strict (every non-zero entry a well-formed mapping to an
/// aligned cluster inside the file and off metadata, at least one mapping data), so guest data is very unlikely to
/// pass; the refcount-block test only applies to refcounts of 8 bits or more, where small integers in every slot are
/// unlikely in data. Whatever passes neither is treated as data and kept.
/// </summary>
internal static class HostClusterClassifier
{
    public static HostClusterKind Classify(DamagedImage image, ReadOnlySpan<byte> cluster)
    {
        if (!cluster.ContainsAnyExcept((byte)0)) return HostClusterKind.Free;
        var g = image.Geometry;
        int mapsData = 0, pointsAtMetadata = 0, nonZero = 0;
        bool l2Shaped = true;
        for (int j = 0; j < g.L2Entries; j++)
        {
            var entry = image.GetL2Entry(cluster, j);
            if (entry.Raw == 0 && entry.Bitmap == 0) continue;
            nonZero++;
            if (IsPointerToMetadata(image, entry.Raw))
            {
                pointsAtMetadata++;
                continue;
            }
            if (image.L2EntryProblem(entry) is not null) { l2Shaped = false; break; }
            if (entry.IsCompressed || entry.HostOffset != 0) mapsData++;
        }
        if (l2Shaped && pointsAtMetadata == nonZero) return HostClusterKind.StaleTable;
        if (l2Shaped && pointsAtMetadata == 0 && mapsData > 0) return HostClusterKind.L2Table;
        return LooksLikeRefcountBlock(image, cluster) ? HostClusterKind.RefcountBlock : HostClusterKind.Data;
    }

    private static bool IsPointerToMetadata(DamagedImage image, ulong raw)
    {
        long offset = (long)(raw & L1Entry.OffsetMask);
        return (raw & ~(L1Entry.OffsetMask | L1Entry.CopiedFlag)) == 0 && offset > 0 && offset < image.FileLength
            && (offset & image.Geometry.ClusterOffsetMask) == 0 && image.Metadata.Get(image.ClusterOf(offset));
    }

    private static bool LooksLikeRefcountBlock(DamagedImage image, ReadOnlySpan<byte> cluster)
    {
        int order = image.Header.RefcountOrder;
        if (order < 3) return false;
        ulong limit = image.Header.SnapshotCount + 2UL;
        int entries = image.Geometry.RefcountBlockEntries;
        for (int i = 0; i < entries; i++)
            if (RefcountBlockCodec.Get(cluster, i, order) > limit) return false;
        return true;
    }
}
