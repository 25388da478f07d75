namespace NbdQcow.Bench;

/// <summary>One load shape of `nbdqcow bench`: access pattern, request size, queue depth, mix and flush rate.</summary>
internal sealed record BenchWorkload(
    string Name,
    bool Sequential,
    int BlockSize,
    int QueueDepth,
    int Connections,
    int ReadPercent,
    int FlushEveryWrites,
    string Description)
{
    /// <summary>The workloads `--workload all` runs, in order (reads first, so they see the prepared data).</summary>
    public static readonly BenchWorkload[] All =
    [
        new("randread-4k-qd1", false, 4096, 1, 1, 100, 0, "4 KiB random reads, one at a time (latency)"),
        new("randread-4k-qd16", false, 4096, 16, 1, 100, 0, "4 KiB random reads, 16 in flight"),
        new("seqread-1m-qd4", true, 1 << 20, 4, 1, 100, 0, "1 MiB sequential reads, 4 in flight"),
        new("randwrite-4k-qd16", false, 4096, 16, 1, 0, 0, "4 KiB random overwrites, 16 in flight"),
        new("seqwrite-1m-qd4", true, 1 << 20, 4, 1, 0, 0, "1 MiB sequential writes, 4 in flight"),
        new("randrw-4k-qd16-flush32", false, 4096, 16, 1, 70, 32, "4 KiB random 70% reads / 30% writes, FLUSH every 32 writes"),
        new("randread-4k-4conn-qd8", false, 4096, 8, 4, 100, 0, "4 KiB random reads over 4 connections, 8 in flight each"),
    ];

    public static BenchWorkload? Find(string name)
    {
        foreach (var workload in All)
        {
            if (string.Equals(workload.Name, name, StringComparison.OrdinalIgnoreCase))
            {
                return workload;
            }
        }
        return null;
    }

    public bool Writes => ReadPercent < 100;
}
