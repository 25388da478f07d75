using Microsoft.Extensions.Time.Testing;
using NbdQcow.Cache;
using NbdQcow.Image;
using NbdQcow.Tests.Crash.Recording;

namespace NbdQcow.Tests.Crash.Oracle;

/// <summary>
/// Drives a block device with a workload, one request at a time, noting the host log tick before each request and
/// at its acknowledgement, and advancing a fake clock for max dirty age. Then works out, per the durability
/// contract, from which tick on each op must survive a power loss.
/// </summary>
/// <remarks>
/// Max dirty age is tested with a fake clock: after an Advance step makes some acknowledged change older than the
/// bound, the runner waits (bounded) for the engine's background flush to complete, then records a settle point:
/// from that tick on every change acknowledged at least max-age before the clock's time must be durable.
/// The engine's background flush runs off the fake clock's timer, so no test sleeps for real time.
/// </remarks>
public static class WorkloadRunner
{
    // Generous for an async engine's ordered flush chain; once one was missed, later waits are short.
    private static readonly TimeSpan BackgroundFlushWait = TimeSpan.FromSeconds(3);
    private static readonly TimeSpan BackgroundFlushWaitAfterMiss = TimeSpan.FromMilliseconds(300);

    /// <param name="toleratesErrors">Failing-storage runs: a request the device fails is marked failed instead of ending the run.</param>
    public static async Task<WorkloadRun> RunAsync(IBlockDevice device, Workload workload, HostFileLog log, FakeTimeProvider time, CrashModeConfig config,
        bool toleratesErrors = false)
    {
        var start = time.GetUtcNow();
        var ops = new List<OpRecord>();
        var settles = new List<SettlePoint>();
        var missed = 0;
        var buffer = new byte[1 << 20];
        foreach (var step in workload.Steps)
        {
            if (step.Kind == WorkloadStepKind.Advance)
            {
                var before = log.CurrentTick;
                time.Advance(TimeSpan.FromMilliseconds(step.AdvanceMilliseconds));
                var now = time.GetUtcNow() - start;
                if (config.MaxDirtyAge is { } age && config.Mode.HasVolatileCache() && SomeChangeDue(ops, now, age, log.LastCompletedBarrierIssueTick))
                {
                    if (!await WaitForBackgroundFlushAsync(log, before, missed == 0 ? BackgroundFlushWait : BackgroundFlushWaitAfterMiss)) missed++;
                    settles.Add(new SettlePoint(log.CurrentTick, now));
                }
                continue;
            }
            var op = new OpRecord { Id = ops.Count + 1, Step = step, StartTick = log.CurrentTick };
            ops.Add(op);
            try
            {
                switch (step.Kind)
                {
                    case WorkloadStepKind.Write:
                        var data = step.Length <= buffer.Length ? buffer.AsMemory(0, (int)step.Length) : new byte[step.Length];
                        SectorPattern.Fill(data.Span, op.Id, op.FirstSector, (int)op.SectorCount);
                        await device.WriteAsync(step.Offset, data, step.Fua);
                        break;
                    case WorkloadStepKind.Zero:
                        await device.ZeroAsync(step.Offset, step.Length, step.ZeroFlags | (step.Fua ? ZeroFlags.Fua : ZeroFlags.None));
                        break;
                    case WorkloadStepKind.Trim:
                        await device.TrimAsync(step.Offset, step.Length, step.Fua);
                        break;
                    case WorkloadStepKind.Flush:
                        await device.FlushAsync();
                        break;
                }
            }
            catch (BlockDeviceException) when (toleratesErrors)
            {
                op.Failed = true;
            }
            op.AckTick = log.CurrentTick;
            op.AckTime = time.GetUtcNow() - start;
        }
        AssignDurability(ops, settles, config);
        return new WorkloadRun(ops, settles, log.CurrentTick, missed);
    }

    /// <summary>True when a change acknowledged after the last barrier began is now older than the bound.</summary>
    private static bool SomeChangeDue(List<OpRecord> ops, TimeSpan now, TimeSpan age, long lastBarrierIssueTick)
    {
        foreach (var op in ops)
            if (op.Step.ChangesData && op.AckTick > lastBarrierIssueTick && op.AckTime + age <= now) return true;
        return false;
    }

    /// <summary>Waits until a barrier issued after <paramref name="tick"/> has completed and nothing is in flight.</summary>
    private static async Task<bool> WaitForBackgroundFlushAsync(HostFileLog log, long tick, TimeSpan wait)
    {
        var deadline = DateTime.UtcNow + wait;
        while (DateTime.UtcNow < deadline)
        {
            if (log.CompletedBarriersIssuedAfter(tick) > 0 && !log.HasCallsInFlight)
            {
                // Let an ordered multi-barrier flush (qcow2) finish its chain before declaring it settled.
                var seen = log.CurrentTick;
                await Task.Delay(20);
                if (log.CurrentTick == seen && !log.HasCallsInFlight) return true;
                continue;
            }
            await Task.Delay(5);
        }
        return false;
    }

    /// <summary>The durability contract (ARCHITECTURE.md), per op: from which tick on it must read back after a power loss.</summary>
    public static void AssignDurability(List<OpRecord> ops, List<SettlePoint> settles, CrashModeConfig config)
    {
        var mode = config.Mode;
        foreach (var op in ops)
        {
            if (!op.Step.ChangesData || op.Failed) continue;
            void Promise(long tick, string because)
            {
                if (tick < op.DurableFromTick) { op.DurableFromTick = tick; op.DurableBecause = because; }
            }
            if (mode.IsWriteThrough()) Promise(op.AckTick, mode.ToCliName());
            if (op.Step.Fua && mode.HonoursFlush()) Promise(op.AckTick, "fua");
            if (mode.HonoursFlush())
            {
                foreach (var flush in ops)
                    if (flush.Step.Kind == WorkloadStepKind.Flush && flush.StartTick >= op.AckTick && !flush.Failed)
                    {
                        Promise(flush.AckTick, $"flush op {flush.Id}");
                        break;
                    }
            }
            if (config.MaxDirtyAge is { } age && mode.HasVolatileCache())
            {
                foreach (var settle in settles)
                    if (settle.Time >= op.AckTime + age)
                    {
                        Promise(settle.Tick, "max dirty age");
                        break;
                    }
            }
        }
    }
}
