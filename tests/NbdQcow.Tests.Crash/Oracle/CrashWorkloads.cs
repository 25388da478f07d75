using NbdQcow.Image;

namespace NbdQcow.Tests.Crash.Oracle;

/// <summary>
/// The fixed-seed crash workloads that apply to any format. Writes are whole 512-byte sectors, some
/// aligned to 4 KiB and some not (so O_DIRECT read-modify-write and torn 4 KiB blocks are exercised).
/// </summary>
public static class CrashWorkloads
{
    public const int Sector = 512;

    public static IReadOnlyList<Workload> All(long deviceSize) =>
    [
        NeverFlushed(deviceSize),
        FlushEveryN(deviceSize, 8),
        FuaWrites(deviceSize),
        MixedOverwriteZeroTrim(deviceSize),
        ZeroTrimThenAllocate(deviceSize),
    ];

    /// <summary>Allocating writes and no flush at all, with time passing: the "all zeroes after a crash" report.</summary>
    public static Workload NeverFlushed(long size)
    {
        var random = new Random(101);
        var steps = new List<WorkloadStep>();
        for (var i = 0; i < 40; i++)
        {
            steps.Add(RandomWrite(random, 0, size, 64 << 10));
            if (i % 4 == 3) steps.Add(new WorkloadStep(WorkloadStepKind.Advance, AdvanceMilliseconds: 300));
        }
        return new Workload("never-flushed", size, steps);
    }

    public static Workload FlushEveryN(long size, int n)
    {
        var random = new Random(202);
        var steps = new List<WorkloadStep>();
        for (var i = 1; i <= 6 * n; i++)
        {
            steps.Add(RandomWrite(random, 0, size, 48 << 10));
            if (i % n == 0) steps.Add(new WorkloadStep(WorkloadStepKind.Flush));
            if (i % 10 == 0) steps.Add(new WorkloadStep(WorkloadStepKind.Advance, AdvanceMilliseconds: 200));
        }
        return new Workload($"flush-every-{n}", size, steps);
    }

    public static Workload FuaWrites(long size)
    {
        var random = new Random(303);
        var steps = new List<WorkloadStep>();
        for (var i = 0; i < 40; i++)
        {
            var write = RandomWrite(random, 0, size, 32 << 10);
            steps.Add(write with { Fua = i % 3 == 0 });
            if (i % 8 == 7) steps.Add(new WorkloadStep(WorkloadStepKind.Advance, AdvanceMilliseconds: 150));
        }
        return new Workload("fua-writes", size, steps);
    }

    /// <summary>Overlapping overwrites, zeroes (with and without NO_HOLE) and trims in a small region, flushed now and then.</summary>
    public static Workload MixedOverwriteZeroTrim(long size)
    {
        var random = new Random(404);
        var region = Math.Min(size, 256 << 10);
        var steps = new List<WorkloadStep>();
        for (var i = 0; i < 70; i++)
        {
            var roll = random.Next(100);
            if (roll < 55) steps.Add(RandomWrite(random, 0, region, 24 << 10));
            else if (roll < 70)
            {
                var (offset, length) = RandomRange(random, 0, region, 32 << 10);
                steps.Add(new WorkloadStep(WorkloadStepKind.Zero, offset, length,
                    ZeroFlags: random.Next(2) == 0 ? ZeroFlags.None : ZeroFlags.NoHole));
            }
            else if (roll < 80)
            {
                var (offset, length) = RandomRange(random, 0, region, 32 << 10);
                steps.Add(new WorkloadStep(WorkloadStepKind.Trim, offset, length));
            }
            else if (roll < 93) steps.Add(new WorkloadStep(WorkloadStepKind.Flush));
            else steps.Add(new WorkloadStep(WorkloadStepKind.Advance, AdvanceMilliseconds: 400));
        }
        return new Workload("mixed-overwrite-zero-trim", size, steps);
    }

    /// <summary>Fill 64 KiB clusters, flush, zero or trim whole clusters, then allocate elsewhere (reuse of freed space).</summary>
    public static Workload ZeroTrimThenAllocate(long size)
    {
        const int cluster = 64 << 10;
        var clusters = (int)(size / cluster);
        var random = new Random(505);
        var steps = new List<WorkloadStep>();
        var next = 0;
        for (var round = 0; round < 3 && next < clusters; round++)
        {
            var first = next;
            for (var i = 0; i < 4 && next < clusters; i++, next++) steps.Add(new WorkloadStep(WorkloadStepKind.Write, (long)next * cluster, cluster));
            steps.Add(new WorkloadStep(WorkloadStepKind.Flush));
            for (var c = first; c < next; c += 2)
                steps.Add(random.Next(2) == 0
                    ? new WorkloadStep(WorkloadStepKind.Zero, (long)c * cluster, cluster)
                    : new WorkloadStep(WorkloadStepKind.Trim, (long)c * cluster, cluster));
            for (var i = 0; i < 3 && next < clusters; i++, next++)
                steps.Add(new WorkloadStep(WorkloadStepKind.Write, (long)next * cluster + Sector * random.Next(0, 16), cluster / 2));
            if (round == 1) steps.Add(new WorkloadStep(WorkloadStepKind.Flush));
            steps.Add(new WorkloadStep(WorkloadStepKind.Advance, AdvanceMilliseconds: 600));
        }
        return new Workload("zero-trim-then-allocate", size, steps);
    }

    /// <summary>Partial-cluster writes (and some zeroes) over a backing file: copy-on-write must keep the backing data around them.</summary>
    public static Workload CowPartialWrites(long size, int cluster = 65536)
    {
        var random = new Random(606);
        var steps = new List<WorkloadStep>();
        for (var i = 1; i <= 36; i++)
        {
            var clusterStart = random.NextInt64(0, size / cluster) * cluster;
            var sectorsPerCluster = cluster / Sector;
            var first = random.Next(0, sectorsPerCluster - 1);
            var count = random.Next(1, Math.Min(sectorsPerCluster - first, 32) + 1);
            steps.Add(i % 9 == 0
                ? new WorkloadStep(WorkloadStepKind.Zero, clusterStart + first * Sector, count * Sector)
                : new WorkloadStep(WorkloadStepKind.Write, clusterStart + first * Sector, count * Sector));
            if (i % 6 == 0) steps.Add(new WorkloadStep(WorkloadStepKind.Flush));
            if (i % 5 == 0) steps.Add(new WorkloadStep(WorkloadStepKind.Advance, AdvanceMilliseconds: 350));
        }
        return new Workload("cow-partial-writes", size, steps);
    }

    /// <summary>Sequential allocating writes over most of the device: with small clusters the refcount table must grow.</summary>
    public static Workload RefcountGrowth(long size, int chunk = 32 << 10)
    {
        var steps = new List<WorkloadStep>();
        var writes = (int)(size * 3 / 4 / chunk);
        for (var i = 1; i <= writes; i++)
        {
            steps.Add(new WorkloadStep(WorkloadStepKind.Write, (long)(i - 1) * chunk, chunk));
            if (i % 16 == 0) steps.Add(new WorkloadStep(WorkloadStepKind.Flush));
            if (i % 24 == 0) steps.Add(new WorkloadStep(WorkloadStepKind.Advance, AdvanceMilliseconds: 500));
        }
        return new Workload("refcount-growth", size, steps);
    }

    private static WorkloadStep RandomWrite(Random random, long start, long end, int maxLength)
    {
        var (offset, length) = RandomRange(random, start, end, maxLength);
        return new WorkloadStep(WorkloadStepKind.Write, offset, length);
    }

    private static (long Offset, long Length) RandomRange(Random random, long start, long end, int maxLength)
    {
        // Half 4 KiB-aligned, half only sector-aligned.
        var unit = random.Next(2) == 0 ? 4096 : Sector;
        var length = (long)random.Next(1, Math.Max(2, maxLength / unit)) * unit;
        length = Math.Min(length, end - start);
        var slots = (end - start - length) / Sector;
        var offset = start + random.NextInt64(0, slots + 1) * Sector;
        return (offset, length);
    }
}
