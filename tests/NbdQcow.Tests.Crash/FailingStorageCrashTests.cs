using NbdQcow.Cache;
using NbdQcow.HostIo;
using NbdQcow.Tests.Crash.Oracle;
using NbdQcow.Tests.Crash.Recording;
using NbdQcow.Tests.Crash.States;
using NbdQcow.Tests.Faults;
using Xunit.Abstractions;

namespace NbdQcow.Tests.Crash;

/// <summary>
/// Power loss after the storage failed: the Nth fdatasync (or data write) of a workload fails, the workload goes on
/// (requests that fail promise nothing), and then the host crashes at any point. A failed fdatasync drops the
/// writes since the last good one, as Linux drops pages whose writeback failed; a later flush acknowledged anyway
/// would promise writes that are gone, and the oracle would find them missing.
/// </summary>
public sealed class FailingStorageCrashTests(ITestOutputHelper output)
{
    private const long DeviceSize = 1 << 20;
    private static readonly CrashStateBudget Budget = new(CrashPoints: 4, RandomTicks: 1, Prefixes: 3, RandomSubsets: 2, TornWrites: 1);

    public static TheoryData<string, HostCallKind, int, string> Cases() => new()
    {
        { "raw", HostCallKind.Flush, 1, "threads" },
        { "raw", HostCallKind.Flush, 3, "threads" },
        { "raw", HostCallKind.Write, 5, "threads" },
        { "qcow2", HostCallKind.Flush, 1, "threads" },
        { "qcow2", HostCallKind.Flush, 4, "threads" },
        { "qcow2", HostCallKind.Write, 7, "threads" },
        // The fault injector and the sticky sync latch over the io_uring engine's asynchronous data path.
        { "raw", HostCallKind.Flush, 3, "io_uring" },
        { "qcow2", HostCallKind.Flush, 4, "io_uring" },
        { "qcow2", HostCallKind.Write, 7, "io_uring" },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public async Task After_a_failed_host_call_every_crash_state_is_consistent_and_keeps_what_was_acknowledged_durable(
        string format, HostCallKind kind, int failAt, string engineName)
    {
        Assert.True(CacheModeInfo.TryParseAio(engineName, out var aio));
        var config = CrashModeConfig.All.Single(c => c.Mode == CacheMode.Writeback && c.MaxDirtyAge is null);
        ICrashImageFormat image = format == "qcow2" ? new Qcow2CrashImageFormat(clusterSize: 4096) : new RawCrashImageFormat();
        var plan = new FaultPlan(kind, kind == HostCallKind.Flush ? HostFault.Eio : HostFault.NoSpace, failAt: failAt)
        {
            DropsUnsyncedWritesOnFailedSync = true,
        };
        var work = DiskBackedFolder.Create("crash-failing");
        CrashCaseResult result;
        try
        {
            result = await CrashCaseRunner.RunAsync(image, config, CrashWorkloads.FlushEveryN(DeviceSize, 3), Budget, 7000 + failAt, work,
                adjustOptions: options => options with { HostFileFactory = Inject(options.HostFileFactory!, plan) },
                toleratesErrors: true, aio: aio);
        }
        finally
        {
            try { Directory.Delete(work, recursive: true); } catch (IOException) { }
        }
        output.WriteLine(CrashMatrixReport.Format([result]));
        foreach (var problem in result.Problems) output.WriteLine(problem);
        Assert.Equal(1, plan.Failures);
        Assert.True(result.FailedRequests > 0, "the injected failure reached no request");
        Assert.True(result.StatesChecked > result.CrashPoints, $"too few states ({result.StatesChecked})");
        Assert.True(result.Corruptions == 0, string.Join(" | ", result.Problems));
        Assert.True(result.Violations == 0, string.Join(" | ", result.Problems));
    }

    /// <summary>The fault injector sits above the recorder: a failed call never reaches the recorded "disk".</summary>
    private static HostFileFactory Inject(HostFileFactory recording, FaultPlan plan) =>
        (path, options) => new FaultInjectingHostFile(recording(path, options), plan);
}
