namespace NbdQcow.Tests.Faults;

/// <summary>
/// Which host calls fail, shared by every file one image opens (image, journal, data file), so "the Nth write"
/// counts across them: fail call number <see cref="FailAt"/> of <see cref="Kind"/> (1-based), or each such call
/// with probability <see cref="Probability"/> from a seeded generator. Failures stop after <see cref="MaxFailures"/>.
/// </summary>
public sealed class FaultPlan
{
    private readonly object _gate = new();
    private readonly Random? _random;
    private long _calls;

    public FaultPlan(HostCallKind kind, HostFault fault, long failAt = 0, double probability = 0, int seed = 0, int maxFailures = 1)
    {
        Kind = kind;
        Fault = fault;
        FailAt = failAt;
        Probability = probability;
        MaxFailures = maxFailures;
        if (probability > 0) _random = new Random(seed);
    }

    public HostCallKind Kind { get; }

    public HostFault Fault { get; }

    public long FailAt { get; }

    public double Probability { get; }

    public int MaxFailures { get; }

    /// <summary>Calls of <see cref="Kind"/> seen so far.</summary>
    public long Calls { get { lock (_gate) return _calls; } }

    /// <summary>Failures injected so far.</summary>
    public int Failures { get; private set; }

    /// <summary>
    /// Model of Linux after a failed fdatasync: the pages written since the last good one are dropped (the file
    /// reads as before them), and a later fdatasync succeeds without them.
    /// </summary>
    public bool DropsUnsyncedWritesOnFailedSync { get; init; }

    /// <summary>While false, calls pass and are not counted (setup and verification run with the plan disarmed).</summary>
    public bool Armed { get; set; } = true;

    /// <summary>Counts a call of <paramref name="kind"/>; true when this one must fail.</summary>
    public bool ShouldFail(HostCallKind kind)
    {
        if (kind != Kind) return false;
        lock (_gate)
        {
            if (!Armed) return false;
            _calls++;
            if (Failures >= MaxFailures) return false;
            var fail = _random is not null ? _random.NextDouble() < Probability : _calls >= FailAt && FailAt > 0;
            if (fail) Failures++;
            return fail;
        }
    }
}
