using NbdQcow.Cache;
using NbdQcow.HostIo;
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

    /// <summary>Counts fdatasyncs of the image file; while <see cref="Hold"/> is set, the next one waits for it to be released.</summary>
    private sealed class HoldableSyncFile(IHostFile inner, HoldableSyncFile.Control control) : HostFileDecorator(inner)
    {
        public sealed class Control
        {
            public int Syncs;
            public volatile bool Hold;
            public readonly SemaphoreSlim Held = new(0);
            public readonly SemaphoreSlim Release = new(0);
        }

        public override void Flush()
        {
            Interlocked.Increment(ref control.Syncs);
            if (control.Hold)
            {
                control.Hold = false;
                control.Held.Release();
                control.Release.Wait(TimeSpan.FromSeconds(20));
            }
            base.Flush();
        }

        // The flush's final fdatasync is the data path's asynchronous barrier: held and counted the same way.
        public override ValueTask FlushAsync()
        {
            Flush();
            return ValueTask.CompletedTask;
        }
    }

    [Fact]
    public async Task A_forced_flush_waiting_behind_one_that_made_the_frees_reusable_does_not_flush_again()
    {
        var path = _dir.File("disk.qcow2");
        QemuImgTool.Create(path, "64M");
        var control = new HoldableSyncFile.Control();
        await using var device = ImageOpener.Open(path, new ImageOpenOptions
        {
            CacheMode = CacheMode.Writeback,
            MaxDirtyAge = null,
            HostFileFactory = (p, o) => p == path ? new HoldableSyncFile(HostFile.Open(p, o), control) : HostFile.Open(p, o),
        });
        var data = new byte[Mib];
        Array.Fill(data, (byte)0x33);
        for (var i = 0; i < 40; i++)
        {
            await device.WriteAsync((long)i * Mib, data, fua: false);
        }
        await device.FlushAsync();

        // A: a trim freeing 36 MiB runs the forced flush; its fdatasync (outside the metadata lock) is held.
        control.Hold = true;
        var syncsBefore = Volatile.Read(ref control.Syncs);
        var trim = Task.Run(() => device.TrimAsync(0, 36L * Mib, fua: false).AsTask());
        Assert.True(await control.Held.WaitAsync(TimeSpan.FromSeconds(10)), "the forced flush never reached its fdatasync");
        var syncsAtHold = Volatile.Read(ref control.Syncs);

        // B: an overwrite in place completes its change and, with 36 MiB still pending, asks for the same flush:
        // it waits behind A's.
        var write = Task.Run(() => device.WriteAsync(38L * Mib, data.AsMemory(0, 4096), fua: false).AsTask());
        await Task.Delay(300);
        Assert.False(write.IsCompleted, "the second request did not wait for the flush in progress");

        control.Release.Release();
        await Task.WhenAll(trim, write).WaitAsync(TimeSpan.FromSeconds(20));
        // A's flush made the frees reusable; B's turn finds nothing left to reclaim and syncs nothing.
        Assert.True(Volatile.Read(ref control.Syncs) == syncsAtHold,
            $"{Volatile.Read(ref control.Syncs) - syncsAtHold} fdatasync(s) after the flush that covered the frees (before it: {syncsAtHold - syncsBefore})");
    }

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
