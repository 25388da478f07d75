namespace NbdQcow.Image.Qcow2.Recover;

/// <summary>
/// Reads every host cluster no valid table references (skipping holes of a sparse file with SEEK_DATA/SEEK_HOLE,
/// reading in batches) and sorts it: orphan L2 table candidates and orphan data are kept as offsets (8 bytes per
/// cluster found, never the contents), stale refcount blocks and tables only counted.
/// </summary>
internal sealed class OrphanClusterScan
{
    private const int BatchBytes = 1 << 20;

    public List<long> L2Candidates { get; } = new();
    public List<long> OrphanData { get; } = new();

    public static OrphanClusterScan Run(DamagedImage image, HostClusterBitmap referenced, IProgress<RecoveryProgress>? progress)
    {
        var scan = new OrphanClusterScan();
        var g = image.Geometry;
        int batchClusters = Math.Max(1, BatchBytes / g.ClusterSize);
        var buffer = new byte[batchClusters * g.ClusterSize];
        long c = 1; // cluster 0 is the header
        long lastReport = 0;
        while (c < image.FileClusters)
        {
            long dataStart = image.File.SeekData(c << g.ClusterBits);
            if (dataStart >= image.FileLength) break;
            long first = Math.Max(c, image.ClusterOf(dataStart));
            long holeStart = image.File.SeekHole(first << g.ClusterBits);
            long end = Math.Min(image.FileClusters, Math.Max(first + 1, (holeStart + g.ClusterSize - 1) >> g.ClusterBits));
            for (long batch = first; batch < end; batch += batchClusters)
            {
                int count = (int)Math.Min(batchClusters, end - batch);
                bool any = false;
                for (long k = batch; k < batch + count && !any; k++)
                    any = !referenced.Get(k) && !image.Metadata.Get(k);
                if (!any) continue;
                image.File.Read(batch << g.ClusterBits, buffer.AsSpan(0, count * g.ClusterSize));
                for (int k = 0; k < count; k++)
                {
                    long cluster = batch + k;
                    if (referenced.Get(cluster) || image.Metadata.Get(cluster)) continue;
                    image.Report.ClustersScanned++;
                    switch (HostClusterClassifier.Classify(image, buffer.AsSpan(k * g.ClusterSize, g.ClusterSize)))
                    {
                        case HostClusterKind.L2Table: scan.L2Candidates.Add(cluster << g.ClusterBits); break;
                        case HostClusterKind.RefcountBlock: image.Report.StaleRefcountBlocks++; break;
                        case HostClusterKind.StaleTable: image.Report.StaleMetadataTables++; break;
                        case HostClusterKind.Data: scan.OrphanData.Add(cluster << g.ClusterBits); break;
                    }
                }
                if (progress is not null && batch - lastReport >= 4096)
                {
                    progress.Report(new RecoveryProgress("scanning for orphan clusters", batch, image.FileClusters));
                    lastReport = batch;
                }
            }
            c = end;
        }
        progress?.Report(new RecoveryProgress("scanning for orphan clusters", image.FileClusters, image.FileClusters));
        return scan;
    }
}
