using NbdQcow.Cache;
using NbdQcow.Image;
using NbdQcow.Tests.Faults;
using NbdQcow.Tests.Unit.Qcow2Write;

namespace NbdQcow.Tests.Unit.Faults;

/// <summary>
/// The flush a qcow2 image forces by itself once many freed clusters wait (trim churn without client flushes) is the
/// image's business: when it fails, the trim or write that happened to trigger it still succeeds (it asked for no
/// durability), and the failure shows where failing storage shows: the background-error report and, for a failed
/// fdatasync, every later FLUSH refused.
/// </summary>
public sealed class TrimChurnFlushFailureTests : IDisposable
{
    private const int Mib = 1 << 20;
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public async Task A_failed_forced_flush_for_pending_frees_does_not_fail_the_trim_that_triggered_it()
    {
        var path = _dir.File("disk.qcow2");
        QemuImgTool.Create(path, "64M");
        var plan = new FaultPlan(HostCallKind.Flush, HostFault.Eio, failAt: 1) { Armed = false };
        var reported = new List<Exception>();
        var device = ImageOpener.Open(path, new ImageOpenOptions
        {
            CacheMode = CacheMode.Writeback,
            MaxDirtyAge = null, // no background flusher: the request that crosses the threshold runs the flush
            HostFileFactory = FaultInjectingHostFile.Factory(plan),
            BackgroundError = e => { lock (reported) reported.Add(e); },
        });
        var data = new byte[Mib];
        Array.Fill(data, (byte)0x5a);
        for (var i = 0; i < 40; i++)
        {
            await device.WriteAsync((long)i * Mib, data, fua: false);
        }
        await device.FlushAsync();

        plan.Armed = true;
        // 40 MiB freed at once: past the pending-free threshold, so this trim runs the ordered flush, whose fdatasync fails.
        await device.TrimAsync(0, 40L * Mib, fua: false);
        Assert.Equal(1, plan.Failures);
        lock (reported)
        {
            Assert.Single(reported);
        }
        // The failure is the image's state now: no flush is acknowledged after a failed fdatasync.
        var refused = await Assert.ThrowsAsync<BlockDeviceException>(() => device.FlushAsync().AsTask());
        Assert.Equal(BlockError.Io, refused.Error);
        // Writes themselves go on, without a new report each (no flush can succeed until the image is reopened).
        await device.TrimAsync(40L * Mib, 4L * Mib, fua: false);
        await device.WriteAsync(48L * Mib, data, fua: false);
        lock (reported)
        {
            Assert.Single(reported);
        }
        var back = new byte[Mib];
        await device.ReadAsync(48L * Mib, back);
        Assert.Equal(data, back);
        // Closing cannot mark the image clean after a failed fdatasync: it says so.
        await Assert.ThrowsAnyAsync<IOException>(() => device.DisposeAsync().AsTask());
    }
}
