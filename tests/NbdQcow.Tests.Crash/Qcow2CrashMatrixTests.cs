using NbdQcow.Tests.Crash.Oracle;
using NbdQcow.Tests.Crash.States;
using Xunit.Abstractions;

namespace NbdQcow.Tests.Crash;

/// <summary>
/// Power-loss crash states of qcow2 images: every state passes `qemu-img check` (leaks allowed), keeps every
/// durable write, and never shows foreign data — in every cache mode, for the common workloads, COW over a
/// backing file, refcount table growth, and 2 MiB and 512 B clusters.
/// </summary>
public sealed class Qcow2CrashMatrixTests(ITestOutputHelper output)
{
    // qemu-img check runs once per state, so qcow2 cases explore fewer states than raw ones.
    private static readonly CrashStateBudget Budget = new(CrashPoints: 6, RandomTicks: 2, Prefixes: 4, RandomSubsets: 3, TornWrites: 2);

    public static TheoryData<string> Modes()
    {
        var data = new TheoryData<string>();
        foreach (var config in CrashModeConfig.All) data.Add(config.Name);
        return data;
    }

    private async Task RunAndAssertAsync(IEnumerable<(ICrashImageFormat Format, Workload Workload)> cases, CrashModeConfig config)
    {
        var work = DiskBackedFolder.Create("crash-qcow2");
        var results = new List<CrashCaseResult>();
        try
        {
            var seed = 2000;
            foreach (var (format, workload) in cases)
                results.Add(await CrashCaseRunner.RunAsync(format, config, workload, Budget, seed++, work));
        }
        finally
        {
            try { Directory.Delete(work, recursive: true); } catch (IOException) { }
        }
        CrashMatrixReport.Add(results);
        output.WriteLine(CrashMatrixReport.Format(results));
        foreach (var r in results)
            foreach (var p in r.Problems) output.WriteLine($"{r.Format} {r.Workload}: {p}");

        Assert.All(results, r => Assert.True(r.StatesChecked > r.CrashPoints, $"{r.Workload}: too few states ({r.StatesChecked})"));
        Assert.All(results, r => Assert.True(r.Corruptions == 0, $"{r.Format} {r.Mode} {r.Workload}: {string.Join(" | ", r.Problems)}"));
        Assert.All(results, r => Assert.True(r.Violations == 0, $"{r.Format} {r.Mode} {r.Workload}: {string.Join(" | ", r.Problems)}"));
        Assert.All(results, r => Assert.Equal(0, r.MissedBackgroundFlushes));
    }

    [Theory]
    [MemberData(nameof(Modes))]
    public Task Qcow2_crash_states_check_clean_keep_durable_writes_and_show_no_foreign_data(string modeName)
    {
        var config = CrashModeConfig.All.Single(c => c.Name == modeName);
        const long size = 2 << 20;
        var plain = new Qcow2CrashImageFormat();
        var cases = CrashWorkloads.All(size).Select(w => ((ICrashImageFormat)plain, w)).ToList();
        cases.Add((new Qcow2CrashImageFormat(withBacking: true), CrashWorkloads.CowPartialWrites(size)));
        return RunAndAssertAsync(cases, config);
    }

    [Theory]
    [InlineData("writeback")]
    [InlineData("writethrough")]
    [InlineData("unsafe")]
    public Task Qcow2_small_and_large_clusters_and_refcount_growth_survive_crashes(string modeName)
    {
        var config = CrashModeConfig.All.First(c => c.Name == modeName);
        var cases = new List<(ICrashImageFormat, Workload)>
        {
            (new Qcow2CrashImageFormat(clusterSize: 512, refcountOrder: 6), CrashWorkloads.RefcountGrowth(4 << 20)),
            (new Qcow2CrashImageFormat(clusterSize: 512), CrashWorkloads.MixedOverwriteZeroTrim(1 << 20)),
            (new Qcow2CrashImageFormat(clusterSize: 2 << 20), CrashWorkloads.NeverFlushed(8 << 20)),
            (new Qcow2CrashImageFormat(clusterSize: 2 << 20), CrashWorkloads.ZeroTrimThenAllocate(8 << 20)),
        };
        return RunAndAssertAsync(cases, config);
    }
}
