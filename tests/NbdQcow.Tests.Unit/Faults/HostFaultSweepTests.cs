using System.Diagnostics;
using NbdQcow.Cache;
using NbdQcow.HostIo;
using NbdQcow.Image;
using NbdQcow.Tests.Faults;
using NbdQcow.Tests.Unit.HostIo;
using NbdQcow.Tests.Unit.Qcow2Write;
using Xunit.Abstractions;

namespace NbdQcow.Tests.Unit.Faults;

/// <summary>
/// The sweep: for N = 1..K, fail the Nth host call of one kind (write, fdatasync, fallocate, ftruncate) during a
/// scripted workload, retry the failed request once as an error policy would, close, reopen with a healthy disk and
/// check: every write acknowledged as durable reads back, and `qemu-img check` finds no corruption (leaked clusters
/// are allowed: a failed allocation may leak, never corrupt).
/// </summary>
public sealed class HostFaultSweepTests(ITestOutputHelper output) : IDisposable
{
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    public static TheoryData<string, CacheMode, bool, HostCallKind> Cases()
    {
        var data = new TheoryData<string, CacheMode, bool, HostCallKind>();
        foreach (var mode in Enum.GetValues<CacheMode>())
        {
            foreach (var kind in new[] { HostCallKind.Write, HostCallKind.Flush, HostCallKind.Allocate, HostCallKind.SetLength })
            {
                // Unsafe with max dirty age off never syncs: there is no fdatasync to fail.
                if (mode == CacheMode.Unsafe && kind == HostCallKind.Flush) continue;
                data.Add("qcow2", mode, false, kind);
                if (kind is HostCallKind.Write or HostCallKind.Flush or HostCallKind.Allocate) data.Add("raw", mode, false, kind);
            }
        }
        // The metadata journal: journal appends and checkpoints.
        foreach (var kind in new[] { HostCallKind.Write, HostCallKind.Flush, HostCallKind.SetLength })
        {
            data.Add("qcow2", CacheMode.Writeback, true, kind);
            data.Add("qcow2", CacheMode.Writethrough, true, kind);
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public async Task Failing_the_nth_host_call_keeps_the_image_consistent_and_durable_writes_readable(
        string format, CacheMode mode, bool journal, HostCallKind kind)
    {
        var template = _dir.File("template." + format);
        if (format == "qcow2") QemuImgTool.Create(template, "4M", "cluster_size=512", "refcount_bits=64");
        else File.WriteAllBytes(template, new byte[4 << 20]);

        var counting = new FaultPlan(kind, HostFault.Eio);
        var calls = await RunOnceAsync(template, format, mode, journal, counting, "count", qemuCheck: true);
        output.WriteLine($"{format} {mode} journal={journal}: {calls} {kind} calls in the workload");
        if (kind != HostCallKind.SetLength) Assert.True(calls > 0, $"the workload made no {kind} call: the sweep would prove nothing");
        var stopwatch = Stopwatch.StartNew();
        for (var n = 1; n <= calls; n++)
        {
            var fault = FaultFor(kind, n);
            var plan = new FaultPlan(kind, fault, failAt: n);
            // qemu-img check costs a process start: every third run and the last; nbdqcow's own check runs every time.
            var qemuCheck = n % 3 == 0 || n == calls;
            await RunOnceAsync(template, format, mode, journal, plan, $"{kind} #{n} fails with {fault}", qemuCheck);
            Assert.Equal(1, plan.Failures);
        }
        output.WriteLine($"{calls} runs in {stopwatch.ElapsedMilliseconds} ms");
    }

    /// <summary>Cycles through the failures a call of that kind can really see.</summary>
    private static HostFault FaultFor(HostCallKind kind, int n) => kind switch
    {
        HostCallKind.Write => (HostFault)(n % 4), // EIO, ENOSPC, EDQUOT, short write
        HostCallKind.Flush => n % 2 == 0 ? HostFault.NoSpace : HostFault.Eio,
        _ => n % 2 == 0 ? HostFault.Eio : HostFault.NoSpace,
    };

    /// <summary>One run on a fresh copy of the template; returns the calls of the plan's kind the workload made.</summary>
    private async Task<long> RunOnceAsync(string template, string format, CacheMode mode, bool journal, FaultPlan plan, string context, bool qemuCheck)
    {
        var image = _dir.File("run." + format);
        File.Copy(template, image, overwrite: true);
        File.Delete(image + ".journal");
        var options = new ImageOpenOptions
        {
            CacheMode = mode,
            MaxDirtyAge = null,
            Journal = journal,
            Format = format,
            HostFileFactory = FaultInjectingHostFile.Factory(plan),
        };
        var workload = new FaultSweepWorkload(mode);
        plan.Armed = false; // faults hit the workload, not the open
        var device = ImageOpener.Open(image, options);
        try
        {
            plan.Armed = true;
            await workload.RunAsync(device);
        }
        finally
        {
            plan.Armed = false;
            try { await device.DisposeAsync(); }
            catch (Exception e) when (e is IOException or AggregateException) { /* a failed sync fails the close too */ }
        }
        // A failed hole punch when a cluster is freed is absorbed (returning space is a hint); anything else reaches a request.
        if (plan.Failures > 0 && plan.Kind != HostCallKind.Allocate) Assert.True(workload.FailedRequests > 0, $"{context}: the fault reached no request");
        if (plan.Failures == 0) Assert.Equal(0, workload.FailedRequests);

        await using (var reopened = ImageOpener.Open(image, options with { HostFileFactory = HostFile.Open }))
        {
            await workload.VerifyAsync(reopened, context);
        }
        if (format == "qcow2")
        {
            var own = NbdQcow.Image.Qcow2.Check.Qcow2Checker.Check(image);
            Assert.True(own.FatalError is null && own.Corruptions == 0,
                $"{context}: nbdqcow check: {own.FatalError} {string.Join("\n", own.CorruptionMessages)}");
        }
        if (format == "qcow2" && qemuCheck)
        {
            var (code, report) = QemuImgTool.Run("check", "-f", "qcow2", image);
            Assert.True(code is 0 or 3 && !report.Contains("ERROR", StringComparison.Ordinal), $"{context}: qemu-img check exited {code}:\n{report}");
        }
        return plan.Calls;
    }
}
