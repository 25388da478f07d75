namespace NbdQcow.Bench;

/// <summary>What the load generator measured for one workload against one server.</summary>
internal sealed record BenchLoadResult(
    long Reads,
    long Writes,
    long Flushes,
    long Bytes,
    double Seconds,
    BenchLatencyHistogram Latency)
{
    public double Iops => Seconds > 0 ? (Reads + Writes) / Seconds : 0;

    public double MegabytesPerSecond => Seconds > 0 ? Bytes / Seconds / 1e6 : 0;

    public double P50Microseconds => Latency.Percentile(50) / 1000;

    public double P99Microseconds => Latency.Percentile(99) / 1000;
}
