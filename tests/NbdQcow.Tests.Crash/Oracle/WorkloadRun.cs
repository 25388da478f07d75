namespace NbdQcow.Tests.Crash.Oracle;

/// <summary>The outcome of driving a workload: every op with its ticks and durability, and the clock's settle points.</summary>
public sealed record WorkloadRun(IReadOnlyList<OpRecord> Ops, IReadOnlyList<SettlePoint> SettlePoints, long FinalTick, int MissedBackgroundFlushes);
