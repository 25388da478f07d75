using System.Diagnostics;
using NbdQcow.Config;
using NbdQcow.Image;
using NbdQcow.Server.Exports;
using NbdQcow.Server.Logging;
using NbdQcow.Server.Nbd;
using NbdQcow.Server.Storage;
using NbdQcow.Tests.Faults;
using NbdQcow.Tests.Unit.Qcow2Write;
using NbdQcow.Tests.Unit.Server;

namespace NbdQcow.Tests.Unit.Faults;

/// <summary>The export error policies (werror/rerror) over real images whose host file fails on demand.</summary>
public sealed class ErrorPolicyBlockDeviceTests : IDisposable
{
    private readonly TempDirectory _dir = new();
    private readonly StringWriter _logText = new();

    public void Dispose() => _dir.Dispose();

    private string Log { get { lock (_logText) return _logText.ToString(); } }

    private (ErrorPolicyBlockDevice Device, FaultPlan Plan, string Path) Open(string format, FaultPlan plan, WriteErrorPolicy werror,
        ReadErrorPolicy rerror = ReadErrorPolicy.Report, int timeoutMs = 10_000)
    {
        var path = _dir.File("disk." + format);
        if (format == "qcow2") QemuImgTool.Create(path, "16M");
        else File.WriteAllBytes(path, new byte[16 << 20]);
        plan.Armed = false;
        var image = ImageOpener.Open(path, new ImageOpenOptions { MaxDirtyAge = null, HostFileFactory = FaultInjectingHostFile.Factory(plan) });
        plan.Armed = true;
        var device = new ErrorPolicyBlockDevice(image, "disk", werror, rerror, TimeSpan.FromMilliseconds(timeoutMs), new ServerLog(new ServerLogWriter(_logText, journalPriorities: false)));
        return (device, plan, path);
    }

    private static FaultPlan Failing(HostCallKind kind, HostFault fault, int times = int.MaxValue) => new(kind, fault, failAt: 1, maxFailures: times);

    private static byte[] Data(byte seed)
    {
        var data = new byte[65536];
        for (var i = 0; i < data.Length; i++) data[i] = (byte)(seed + i % 241);
        return data;
    }

    [Fact]
    public async Task Enospc_policy_holds_an_out_of_space_write_until_space_returns_then_the_image_is_clean()
    {
        var (device, plan, path) = Open("qcow2", Failing(HostCallKind.Write, HostFault.NoSpace), WriteErrorPolicy.Enospc);
        await using (device)
        {
            var write = device.WriteAsync(1 << 20, Data(7), fua: false).AsTask();
            await Task.Delay(400);
            Assert.False(write.IsCompleted, "the write was answered while the disk was full");
            Assert.Contains("writes paused: ENOSPC from pwrite since", device.StorageStatus);
            Assert.True(plan.Failures > 2, $"held write retried only {plan.Failures} times");

            plan.Armed = false; // space freed
            await write.WaitAsync(TimeSpan.FromSeconds(5));
            Assert.Equal("ok", device.StorageStatus);
            await device.FlushAsync();
            var back = new byte[65536];
            await device.ReadAsync(1 << 20, back);
            Assert.Equal(Data(7), back);
        }
        Assert.Contains("export 'disk': writes paused: ENOSPC from pwrite", Log);
        Assert.Contains("export 'disk': writes resumed after", Log);
        QemuImgTool.AssertClean(path);
    }

    [Fact]
    public async Task A_client_that_leaves_while_its_write_is_held_gives_the_payload_budget_back_at_once()
    {
        // A 30 s retry timeout: without the client's departure ending the hold, the budget stays taken that long.
        var (device, plan, path) = Open("qcow2", Failing(HostCallKind.Write, HostFault.NoSpace), WriteErrorPolicy.Enospc, timeoutMs: 30_000);
        var budget = new BufferBudget(64L << 20);
        await using (var server = InProcessServer.Start(new NbdSessionOptions { Budget = budget }, new NbdExport("disk", device)))
        {
            try
            {
                var client = await server.ConnectAsync();
                var write = client.WriteAsync(1 << 20, Data(3));
                for (var i = 0; i < 250 && !device.StorageStatus.Contains("writes paused", StringComparison.Ordinal); i++) await Task.Delay(20);
                Assert.Contains("writes paused: ENOSPC", device.StorageStatus);
                Assert.True(budget.Used > 0);

                await client.DisposeAsync(); // the connection drops without waiting for the reply
                await Assert.ThrowsAnyAsync<Exception>(() => write);
                var clock = Stopwatch.StartNew();
                while ((budget.Used > 0 || device.StorageStatus != "ok") && clock.Elapsed < TimeSpan.FromSeconds(5)) await Task.Delay(20);
                Assert.True(budget.Used == 0, $"{budget.Used} bytes of budget still held 5 s after the client left");
                Assert.Equal("ok", device.StorageStatus);
            }
            finally
            {
                plan.Armed = false; // space returns, so the export closes cleanly whatever happened above
            }
        }
        QemuImgTool.AssertClean(path);
    }

    [Fact]
    public async Task Retries_of_a_held_write_stop_at_the_next_attempt_once_its_client_is_gone()
    {
        // The storage keeps failing and the retry timeout is long: only the client's departure can end the retries.
        var (device, plan, path) = Open("qcow2", Failing(HostCallKind.Write, HostFault.Eio), WriteErrorPolicy.Retry, timeoutMs: 60_000);
        await using (var server = InProcessServer.Start(new NbdSessionOptions(), new NbdExport("disk", device)))
        {
            try
            {
                var client = await server.ConnectAsync();
                var write = client.WriteAsync(1 << 20, Data(5));
                for (var i = 0; i < 250 && plan.Failures < 3; i++) await Task.Delay(20);
                Assert.True(plan.Failures >= 3, $"the write was not held and retried ({plan.Failures} failures)");

                await client.DisposeAsync();
                await Assert.ThrowsAnyAsync<Exception>(() => write);
                var clock = Stopwatch.StartNew();
                while (device.StorageStatus != "ok" && clock.Elapsed < TimeSpan.FromSeconds(5)) await Task.Delay(20);
                Assert.Equal("ok", device.StorageStatus);
                int afterRelease = plan.Failures;
                await Task.Delay(1500); // three back-off periods at the longest delay
                Assert.True(plan.Failures <= afterRelease + 1,
                    $"the held write was attempted {plan.Failures - afterRelease} more times after its client left");
            }
            finally
            {
                plan.Armed = false;
            }
        }
        QemuImgTool.AssertClean(path);
    }

    [Fact]
    public async Task Enospc_policy_reports_eio_at_once()
    {
        var (device, _, _) = Open("raw", Failing(HostCallKind.Write, HostFault.Eio), WriteErrorPolicy.Enospc);
        await using (device)
        {
            var error = await Assert.ThrowsAsync<BlockDeviceException>(() => device.WriteAsync(0, Data(1), fua: false).AsTask());
            Assert.Equal(BlockError.Io, error.Error);
        }
        Assert.DoesNotContain("paused", Log);
    }

    [Fact]
    public async Task Report_policy_answers_enospc_at_once()
    {
        var (device, plan, _) = Open("qcow2", Failing(HostCallKind.Write, HostFault.NoSpace), WriteErrorPolicy.Report);
        await using (device)
        {
            var error = await Assert.ThrowsAsync<BlockDeviceException>(() => device.WriteAsync(0, Data(1), fua: false).AsTask());
            Assert.Equal(BlockError.NoSpace, error.Error);
            Assert.Equal(1, plan.Failures);
            plan.Armed = false;
        }
    }

    [Fact]
    public async Task Retry_policy_holds_eio_and_gives_up_after_the_timeout_with_the_storage_error_not_a_timeout()
    {
        var (device, plan, _) = Open("raw", Failing(HostCallKind.Write, HostFault.QuotaExceeded), WriteErrorPolicy.Retry, timeoutMs: 1500);
        await using (device)
        {
            var clock = Stopwatch.StartNew();
            var error = await Assert.ThrowsAsync<BlockDeviceException>(() => device.WriteAsync(0, Data(1), fua: false).AsTask());
            Assert.InRange(clock.ElapsedMilliseconds, 1450, 10000);
            Assert.Equal(BlockError.NoSpace, error.Error);
            Assert.Contains("Disk quota exceeded", error.Message);
            // Back-off 20, 40, 80 ... 500 ms: about seven attempts in 1.5 s; three even on a loaded machine.
            Assert.True(plan.Failures >= 3, $"only {plan.Failures} attempts in 1500 ms");
            Assert.Equal("ok", device.StorageStatus);
            plan.Armed = false;
        }
        Assert.Contains("export 'disk': gave up on held writes after", Log);
    }

    [Fact]
    public async Task Retry_policy_never_retries_a_failed_fdatasync_and_every_later_flush_fails()
    {
        var (device, plan, _) = Open("raw", Failing(HostCallKind.Flush, HostFault.Eio, times: 1), WriteErrorPolicy.Retry);
        await using (device)
        {
            await device.WriteAsync(0, Data(1), fua: false);
            var clock = Stopwatch.StartNew();
            await Assert.ThrowsAsync<BlockDeviceException>(() => device.FlushAsync().AsTask());
            var again = await Assert.ThrowsAsync<BlockDeviceException>(() => device.FlushAsync().AsTask());
            Assert.True(clock.ElapsedMilliseconds < 2000, "a failed fdatasync was held and retried");
            Assert.Equal(BlockError.Io, again.Error);
            Assert.Contains("flushes refused since", device.StorageStatus);
            Assert.Equal(1, plan.Failures);
            await Assert.ThrowsAnyAsync<Exception>(() => device.DisposeAsync().AsTask());
        }
        Assert.Contains("export 'disk': fdatasync failed", Log);
        Assert.Contains("every FLUSH and FUA write now fails with EIO until the export is reopened", Log);
    }

    [Fact]
    public async Task Report_policy_logs_a_failed_fdatasync_once()
    {
        var (device, _, _) = Open("qcow2", Failing(HostCallKind.Flush, HostFault.Eio, times: 1), WriteErrorPolicy.Report);
        await device.WriteAsync(0, Data(1), fua: false);
        await Assert.ThrowsAsync<BlockDeviceException>(() => device.FlushAsync().AsTask());
        await Assert.ThrowsAsync<BlockDeviceException>(() => device.FlushAsync().AsTask());
        await Assert.ThrowsAnyAsync<Exception>(() => device.DisposeAsync().AsTask());
        var log = Log;
        Assert.Equal(1, CountOf(log, "fdatasync failed ("));
    }

    [Fact]
    public async Task Stop_policy_holds_every_write_while_the_storage_fails_and_takes_them_again_after_a_probe()
    {
        var (device, plan, path) = Open("qcow2", Failing(HostCallKind.Write, HostFault.Eio), WriteErrorPolicy.Stop);
        await using (device)
        {
            var first = device.WriteAsync(0, Data(1), fua: false).AsTask();
            for (var i = 0; i < 100 && !Log.Contains("writes stopped", StringComparison.Ordinal); i++) await Task.Delay(20);
            Assert.Contains("export 'disk': writes stopped (policy stop)", Log);
            Assert.True(device.WritesPaused);
            var second = device.WriteAsync(2 << 20, Data(2), fua: false).AsTask();
            var flush = device.FlushAsync().AsTask();
            await Task.Delay(300);
            Assert.False(first.IsCompleted || second.IsCompleted || flush.IsCompleted, "a request was answered while writes were stopped");
            Assert.Contains("writes paused: EIO from pwrite", device.StorageStatus);

            plan.Armed = false; // the storage works again
            await Task.WhenAll(first, second, flush).WaitAsync(TimeSpan.FromSeconds(10));
            Assert.Equal("ok", device.StorageStatus);
        }
        Assert.Contains("a probe write succeeded; writes taken again", Log);
        QemuImgTool.AssertClean(path);
    }

    [Fact]
    public async Task Rerror_retry_holds_a_failing_read_until_it_succeeds_and_report_answers_at_once()
    {
        var (device, _, _) = Open("raw", Failing(HostCallKind.Read, HostFault.Eio, times: 3), WriteErrorPolicy.Report, ReadErrorPolicy.Retry);
        await using (device)
        {
            await device.WriteAsync(0, Data(3), fua: false);
            var back = new byte[65536];
            await device.ReadAsync(0, back);
            Assert.Equal(Data(3), back);
        }
        Assert.Contains("export 'disk': reads paused: EIO from pread", Log);
        Assert.Contains("export 'disk': reads resumed after", Log);

        var (reporting, _, _) = Open("raw", Failing(HostCallKind.Read, HostFault.Eio, times: 1), WriteErrorPolicy.Report, ReadErrorPolicy.Report);
        await using (reporting)
        {
            var error = await Assert.ThrowsAsync<BlockDeviceException>(() => reporting.ReadAsync(0, new byte[512]).AsTask());
            Assert.Equal(BlockError.Io, error.Error);
        }
    }

    private static int CountOf(string text, string part)
    {
        var count = 0;
        for (var i = text.IndexOf(part, StringComparison.Ordinal); i >= 0; i = text.IndexOf(part, i + 1, StringComparison.Ordinal)) count++;
        return count;
    }
}
