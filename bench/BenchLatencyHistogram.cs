using System.Numerics;

namespace NbdQcow.Bench;

/// <summary>
/// Request latencies in nanoseconds, log-linear buckets (32 per power of two, so a percentile is
/// within about 3% of the true value). One instance per worker, merged at the end: no locks and
/// no allocation while recording.
/// </summary>
internal sealed class BenchLatencyHistogram
{
    private const int LinearLimit = 64;          // values below this have a bucket each
    private const int SubBucketBits = 5;         // 32 sub-buckets per power of two above it
    private const int MaxExponent = 42;          // ~73 minutes; longer latencies land in the last bucket
    private const int BucketCount = LinearLimit + (MaxExponent - 6 + 1) * (1 << SubBucketBits);

    private readonly long[] _counts = new long[BucketCount];

    public long Count { get; private set; }

    public void Record(long nanoseconds)
    {
        _counts[IndexOf(Math.Max(0, nanoseconds))]++;
        Count++;
    }

    public void Add(BenchLatencyHistogram other)
    {
        for (var i = 0; i < BucketCount; i++)
        {
            _counts[i] += other._counts[i];
        }
        Count += other.Count;
    }

    /// <summary>The latency (ns, bucket midpoint) at or below which <paramref name="percent"/> % of requests completed; 0 when empty.</summary>
    public double Percentile(double percent)
    {
        if (Count == 0)
        {
            return 0;
        }
        var rank = (long)Math.Ceiling(percent / 100.0 * Count);
        rank = Math.Clamp(rank, 1, Count);
        long seen = 0;
        for (var i = 0; i < BucketCount; i++)
        {
            seen += _counts[i];
            if (seen >= rank)
            {
                var (low, high) = BoundsOf(i);
                return (low + high) / 2.0;
            }
        }
        return BoundsOf(BucketCount - 1).High;
    }

    private static int IndexOf(long value)
    {
        if (value < LinearLimit)
        {
            return (int)value;
        }
        var exponent = 63 - BitOperations.LeadingZeroCount((ulong)value); // >= 6
        if (exponent > MaxExponent)
        {
            return BucketCount - 1;
        }
        var sub = (int)(value >> (exponent - SubBucketBits)) & ((1 << SubBucketBits) - 1);
        return LinearLimit + (exponent - 6) * (1 << SubBucketBits) + sub;
    }

    private static (double Low, double High) BoundsOf(int index)
    {
        if (index < LinearLimit)
        {
            return (index, index + 1);
        }
        var exponent = 6 + (index - LinearLimit) / (1 << SubBucketBits);
        var sub = (index - LinearLimit) % (1 << SubBucketBits);
        var width = 1L << (exponent - SubBucketBits);
        var low = (1L << exponent) + sub * width;
        return (low, low + width);
    }
}
