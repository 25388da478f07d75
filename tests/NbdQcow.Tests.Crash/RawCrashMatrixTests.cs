using NbdQcow.Cache;
using NbdQcow.Tests.Crash.Oracle;
using NbdQcow.Tests.Crash.States;
using Xunit.Abstractions;

namespace NbdQcow.Tests.Crash;

/// <summary>
/// Power-loss crash states of raw images in every cache mode and workload: zero corruptions, zero durability
/// violations (for unsafe with max dirty age off only "no foreign data" applies), and the table of what each
/// mode loses.
/// </summary>
public sealed class RawCrashMatrixTests(ITestOutputHelper output)
{
    private const long DeviceSize = 2 << 20;

    public static TheoryData<string, string> ModesAndEngines()
    {
        var data = new TheoryData<string, string>();
        // io_uring in every cache mode; the max-dirty-age variants do not touch the engine, so they run on threads only.
        foreach (var config in CrashModeConfig.All)
        {
            data.Add(config.Name, "threads");
            if (config.MaxDirtyAge is not null || !config.Mode.HasVolatileCache()) data.Add(config.Name, "io_uring");
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(ModesAndEngines))]
    public async Task Raw_crash_states_keep_every_durable_write_and_never_show_foreign_data(string modeName, string engineName)
    {
        Assert.True(CacheModeInfo.TryParseAio(engineName, out var aio));
        var config = CrashModeConfig.All.Single(c => c.Name == modeName);
        var format = new RawCrashImageFormat();
        var work = DiskBackedFolder.Create("crash-raw");
        var results = new List<CrashCaseResult>();
        try
        {
            var seed = 1000;
            foreach (var workload in CrashWorkloads.All(DeviceSize))
                results.Add(await CrashCaseRunner.RunAsync(format, config, workload, new CrashStateBudget(), seed++, work, aio: aio));
        }
        finally
        {
            try { Directory.Delete(work, recursive: true); } catch (IOException) { }
        }
        CrashMatrixReport.Add(results);
        output.WriteLine(CrashMatrixReport.Format(results));
        foreach (var r in results)
            foreach (var p in r.Problems) output.WriteLine($"{r.Workload}: {p}");

        Assert.All(results, r => Assert.True(r.StatesChecked > r.CrashPoints, $"{r.Workload}: too few states ({r.StatesChecked})"));
        Assert.All(results, r => Assert.Equal(0, r.Corruptions));
        Assert.All(results, r => Assert.True(r.Violations == 0, $"{r.Mode} {r.Workload}: {string.Join(" | ", r.Problems)}"));
        Assert.All(results, r => Assert.Equal(0, r.MissedBackgroundFlushes));
    }
}
