using NbdQcow.Cache;
using NbdQcow.Tests.Crash.Oracle;
using NbdQcow.Tests.Crash.States;
using Xunit.Abstractions;

namespace NbdQcow.Tests.Crash;

/// <summary>
/// Power-loss crash states of qcow2 images served with the metadata journal: the journal file is recorded as a
/// second host file, so states mix image and journal writes per the crash model. Every state must replay (as
/// nbdqcow's open does), then pass `qemu-img check`, keep every durable write and show no foreign data. A small
/// checkpoint bound makes checkpoints (tables in place, journal reset, bit cleared) happen inside the workloads.
/// </summary>
public sealed class Qcow2JournalCrashTests(ITestOutputHelper output)
{
    private static readonly CrashStateBudget Budget = new(CrashPoints: 6, RandomTicks: 1, Prefixes: 3, RandomSubsets: 3, TornWrites: 2);
    private const long DeviceSize = 2 << 20;
    private const long CheckpointBytes = 512 << 10;

    /// <summary>Every mode with a power-loss promise (unsafe + journal is refused).</summary>
    public static TheoryData<string> PromisingModes()
    {
        var data = new TheoryData<string>();
        foreach (var config in CrashModeConfig.All)
            if (config.Mode != CacheMode.Unsafe) data.Add(config.Name);
        return data;
    }

    /// <summary>
    /// Workloads per mode, chosen to keep CI time low while every mode meets a flush pattern that matters to it:
    /// writeback carries the broad set (frees and reuse, never-flushed data saved by max-dirty-age commits, COW over
    /// a backing file, refcount table growth which checkpoints in the middle of an allocation).
    /// </summary>
    private static List<(ICrashImageFormat, Workload)> Cases(CrashModeConfig config)
    {
        var plain = new Qcow2CrashImageFormat();
        return (config.Mode, config.MaxDirtyAge is null) switch
        {
            (CacheMode.Writeback, false) =>
            [
                (plain, CrashWorkloads.MixedOverwriteZeroTrim(DeviceSize)),
                (plain, CrashWorkloads.ZeroTrimThenAllocate(DeviceSize)),
                (plain, CrashWorkloads.NeverFlushed(DeviceSize)),
                (new Qcow2CrashImageFormat(withBacking: true), CrashWorkloads.CowPartialWrites(DeviceSize)),
                (new Qcow2CrashImageFormat(clusterSize: 512, refcountOrder: 6), CrashWorkloads.RefcountGrowth(4 << 20)),
            ],
            (CacheMode.Writeback, true) => [(plain, CrashWorkloads.FlushEveryN(DeviceSize, 8))],
            (CacheMode.None, _) => [(plain, CrashWorkloads.FuaWrites(DeviceSize))],
            (CacheMode.Writethrough, _) => [(plain, CrashWorkloads.MixedOverwriteZeroTrim(DeviceSize))],
            _ => [(plain, CrashWorkloads.FlushEveryN(DeviceSize, 8))],
        };
    }

    [Theory]
    [MemberData(nameof(PromisingModes))]
    public async Task Journalled_qcow2_crash_states_replay_check_clean_keep_durable_writes_and_show_no_foreign_data(string modeName)
    {
        var config = CrashModeConfig.All.Single(c => c.Name == modeName);
        var work = DiskBackedFolder.Create("crash-journal");
        var results = new List<CrashCaseResult>();
        try
        {
            var seed = 4000;
            foreach (var (format, workload) in Cases(config))
            {
                var result = await CrashCaseRunner.RunAsync(format, config, workload, Budget, seed++, work,
                    adjustOptions: o => o with { Journal = true, JournalCheckpointBytes = CheckpointBytes });
                result.Mode += " +journal";
                results.Add(result);
            }
        }
        finally
        {
            try { Directory.Delete(work, recursive: true); } catch (IOException) { }
        }
        CrashMatrixReport.Add(results);
        output.WriteLine(CrashMatrixReport.Format(results));
        foreach (var r in results)
            foreach (var p in r.Problems) output.WriteLine($"{r.Format} {r.Workload}: {p}");
        // The journal file is written and recorded: crash states really mix image and journal writes.
        Assert.All(results, r => Assert.True(r.HostFiles >= 2, $"{r.Workload}: only {r.HostFiles} host file written"));
        Assert.All(results, r => Assert.True(r.StatesChecked > r.CrashPoints, $"{r.Workload}: too few states ({r.StatesChecked})"));
        Assert.All(results, r => Assert.True(r.Corruptions == 0, $"{r.Format} {r.Mode} {r.Workload}: {string.Join(" | ", r.Problems)}"));
        Assert.All(results, r => Assert.True(r.Violations == 0, $"{r.Format} {r.Mode} {r.Workload}: {string.Join(" | ", r.Problems)}"));
        Assert.All(results, r => Assert.Equal(0, r.MissedBackgroundFlushes));
    }
}
