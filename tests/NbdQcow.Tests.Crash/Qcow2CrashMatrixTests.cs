using NbdQcow.Cache;
using NbdQcow.HostIo;
using NbdQcow.Tests.Crash.Oracle;
using NbdQcow.Tests.Crash.States;
using Xunit.Abstractions;

namespace NbdQcow.Tests.Crash;

/// <summary>
/// Power-loss crash states of qcow2 images: every state passes `qemu-img check` (leaks allowed), keeps every
/// durable write, and never shows foreign data — for the common workloads, COW over a backing file, refcount
/// table growth, and 2 MiB and 512 B clusters.
/// </summary>
public sealed class Qcow2CrashMatrixTests(ITestOutputHelper output)
{
    // qemu-img check runs once per distinct state, so qcow2 cases explore fewer states than raw ones.
    private static readonly CrashStateBudget Budget = new(CrashPoints: 6, RandomTicks: 2, Prefixes: 4, RandomSubsets: 3, TornWrites: 2);
    private const long DeviceSize = 2 << 20;

    /// <summary>Modes with a power-loss promise that the server keeps today, with the host-I/O engine to run them on.</summary>
    public static TheoryData<string, string> PromisingModesAndEngines()
    {
        var data = new TheoryData<string, string>();
        // io_uring in every cache mode; the max-dirty-age variants do not touch the engine, so they run on threads only.
        foreach (var config in CrashModeConfig.All)
        {
            if (config.PromisesNothingOnPowerLoss || config.Mode == CacheMode.Unsafe) continue;
            data.Add(config.Name, "threads");
            if (config.MaxDirtyAge is not null || !config.Mode.HasVolatileCache()) data.Add(config.Name, "io_uring");
        }
        return data;
    }

    private static List<(ICrashImageFormat, Workload)> CommonCases()
    {
        var plain = new Qcow2CrashImageFormat();
        var cases = CrashWorkloads.All(DeviceSize).Select(w => ((ICrashImageFormat)plain, w)).ToList();
        cases.Add((new Qcow2CrashImageFormat(withBacking: true), CrashWorkloads.CowPartialWrites(DeviceSize)));
        return cases;
    }

    private static List<(ICrashImageFormat, Workload)> ClusterSizeCases() =>
    [
        (new Qcow2CrashImageFormat(clusterSize: 512, refcountOrder: 6), CrashWorkloads.RefcountGrowth(4 << 20)),
        (new Qcow2CrashImageFormat(clusterSize: 512), CrashWorkloads.MixedOverwriteZeroTrim(1 << 20)),
        (new Qcow2CrashImageFormat(clusterSize: 2 << 20), CrashWorkloads.NeverFlushed(8 << 20)),
        (new Qcow2CrashImageFormat(clusterSize: 2 << 20), CrashWorkloads.ZeroTrimThenAllocate(8 << 20)),
    ];

    private async Task<List<CrashCaseResult>> RunAsync(IEnumerable<(ICrashImageFormat Format, Workload Workload)> cases, CrashModeConfig config,
        AioEngine aio = AioEngine.Threads)
    {
        var work = DiskBackedFolder.Create("crash-qcow2");
        var results = new List<CrashCaseResult>();
        try
        {
            var seed = 2000;
            foreach (var (format, workload) in cases)
                results.Add(await CrashCaseRunner.RunAsync(format, config, workload, Budget, seed++, work, aio: aio));
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
        return results;
    }

    private static void AssertKeptThePromise(List<CrashCaseResult> results)
    {
        Assert.All(results, r => Assert.True(r.Corruptions == 0, $"{r.Format} {r.Mode} {r.Workload}: {string.Join(" | ", r.Problems)}"));
        Assert.All(results, r => Assert.True(r.Violations == 0, $"{r.Format} {r.Mode} {r.Workload}: {string.Join(" | ", r.Problems)}"));
        Assert.All(results, r => Assert.Equal(0, r.MissedBackgroundFlushes));
    }

    [Theory]
    [MemberData(nameof(PromisingModesAndEngines))]
    public async Task Qcow2_crash_states_check_clean_keep_durable_writes_and_show_no_foreign_data(string modeName, string engineName)
    {
        var config = CrashModeConfig.All.Single(c => c.Name == modeName);
        Assert.True(CacheModeInfo.TryParseAio(engineName, out var aio));
        AssertKeptThePromise(await RunAsync(CommonCases(), config, aio));
    }

    [Theory]
    [InlineData("writeback")]
    [InlineData("writethrough")]
    public async Task Qcow2_small_and_large_clusters_and_refcount_growth_survive_crashes(string modeName)
    {
        var config = CrashModeConfig.All.First(c => c.Name == modeName);
        AssertKeptThePromise(await RunAsync(ClusterSizeCases(), config));
    }

    /// <summary>A LUKS-encrypted image (data clusters encrypted by host offset, the LUKS header as metadata) keeps the same promise.</summary>
    [Fact]
    public async Task Encrypted_qcow2_crash_states_check_clean_keep_durable_writes_and_show_no_foreign_data()
    {
        var config = CrashModeConfig.All.First(c => c.Mode == CacheMode.Writeback && c.MaxDirtyAge is not null);
        var encrypted = new Qcow2CrashImageFormat(encrypted: true);
        AssertKeptThePromise(await RunAsync([(encrypted, CrashWorkloads.MixedOverwriteZeroTrim(DeviceSize)), (encrypted, CrashWorkloads.FlushEveryN(DeviceSize, 3))], config));
    }

    [Fact]
    public async Task Qcow2_unsafe_with_max_dirty_age_stays_consistent_and_keeps_aged_writes_after_power_loss()
    {
        var config = CrashModeConfig.All.Single(c => c.Mode == CacheMode.Unsafe && c.MaxDirtyAge is not null);
        AssertKeptThePromise(await RunAsync(CommonCases().Concat(ClusterSizeCases()), config));
    }

    /// <summary>
    /// Unsafe without max dirty age promises nothing after a power loss (only the process-kill test applies), so
    /// this only measures the price for the table: how often such an image is corrupt and how much is lost.
    /// </summary>
    [Fact]
    public async Task Qcow2_unsafe_without_max_dirty_age_is_measured_for_the_table()
    {
        var config = CrashModeConfig.All.Single(c => c.PromisesNothingOnPowerLoss);
        var results = await RunAsync(CommonCases(), config);
        Assert.All(results, r => Assert.Equal(0, r.MissedBackgroundFlushes));
    }
}
