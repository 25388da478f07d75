using NbdQcow.Cache;
using NbdQcow.Tests.Crash.Oracle;
using NbdQcow.Tests.Crash.States;
using Xunit.Abstractions;

namespace NbdQcow.Tests.Crash.SelfTest;

/// <summary>The harness must fail engines that break the contract; otherwise a green crash table proves nothing.</summary>
public sealed class OracleSelfTests(ITestOutputHelper output)
{
    private const long DeviceSize = 1 << 20;

    private async Task<CrashCaseResult> RunAsync(CrashModeConfig config, Workload workload, Func<NbdQcow.Image.IBlockDevice, NbdQcow.Image.IBlockDevice> wrap)
    {
        var work = DiskBackedFolder.Create("crash-selftest");
        try
        {
            var result = await CrashCaseRunner.RunAsync(new RawCrashImageFormat(), config, workload, new CrashStateBudget(), 7, work, wrap);
            output.WriteLine(CrashMatrixReport.Format([result]));
            foreach (var p in result.Problems) output.WriteLine(p);
            return result;
        }
        finally
        {
            try { Directory.Delete(work, recursive: true); } catch (IOException) { }
        }
    }

    [Fact]
    public async Task An_engine_that_drops_flushes_is_caught_losing_flushed_writes()
    {
        var result = await RunAsync(new CrashModeConfig(CacheMode.Writeback, null), CrashWorkloads.FlushEveryN(DeviceSize, 8), d => new FlushDroppingBlockDevice(d));
        Assert.True(result.Violations > 0, "dropped barriers went unnoticed");
        Assert.Contains(result.Problems, p => p.Contains("was durable"));
    }

    [Fact]
    public async Task An_engine_that_drops_fua_is_caught()
    {
        var result = await RunAsync(new CrashModeConfig(CacheMode.None, null), CrashWorkloads.FuaWrites(DeviceSize), d => new FlushDroppingBlockDevice(d));
        Assert.True(result.Violations > 0, "FUA acknowledged without sync went unnoticed");
    }

    [Fact]
    public async Task An_engine_that_ignores_max_dirty_age_is_caught()
    {
        // Opened with max dirty age off, but checked against a contract that has it on.
        var config = new CrashModeConfig(CacheMode.Writeback, CrashModeConfig.DefaultMaxDirtyAge);
        var work = DiskBackedFolder.Create("crash-selftest");
        try
        {
            var result = await CrashCaseRunner.RunAsync(new RawCrashImageFormat(), config, CrashWorkloads.NeverFlushed(DeviceSize),
                new CrashStateBudget(), 7, work, adjustOptions: o => o with { MaxDirtyAge = null });
            foreach (var p in result.Problems) output.WriteLine(p);
            Assert.True(result.MissedBackgroundFlushes > 0);
            Assert.True(result.Violations > 0);
        }
        finally
        {
            try { Directory.Delete(work, recursive: true); } catch (IOException) { }
        }
    }

    [Fact]
    public async Task An_engine_with_a_wrong_mapping_is_caught_showing_foreign_data()
    {
        var result = await RunAsync(new CrashModeConfig(CacheMode.Writethrough, null), CrashWorkloads.FlushEveryN(DeviceSize, 8), d => new MisdirectingBlockDevice(d));
        Assert.True(result.Violations > 0, "misplaced data went unnoticed");
        Assert.Contains(result.Problems, p => p.Contains("never written to this offset"));
    }
}
