using NbdQcow.Cache;
using NbdQcow.HostIo;
using NbdQcow.Image;
using NbdQcow.Image.Qcow2;
using NbdQcow.Tests.Unit.Qcow2Write;

namespace NbdQcow.Tests.Unit.HostIo;

/// <summary>
/// directsync on io_uring: the fdatasync that makes each write durable is the ring's FSYNC, submitted where the write
/// completed (the ring's completion thread), with no thread blocked in a synchronous fdatasync and no hop to the pool
/// first; concurrent writes still share syncs; the data is there afterwards and qemu-img finds the image clean.
/// </summary>
public sealed class DirectSyncThroughRingTests : IDisposable
{
    private const int Writes = 64;
    private readonly TempDirectory _temp = new("dsync-ring", diskBacked: true);

    public void Dispose() => _temp.Dispose();

    /// <summary>Counts the image file's barriers: synchronous ones, and asynchronous ones with the thread they started on.</summary>
    private sealed class BarrierCountingFile(IHostFile inner) : HostFileDecorator(inner)
    {
        public int SyncFlushes;
        public int AsyncFlushes;
        public int AsyncFlushesOnCompletionThread;

        public override void Flush()
        {
            Interlocked.Increment(ref SyncFlushes);
            base.Flush();
        }

        public override ValueTask FlushAsync()
        {
            Interlocked.Increment(ref AsyncFlushes);
            if (IoCompletionThread.IsCurrent) Interlocked.Increment(ref AsyncFlushesOnCompletionThread);
            return base.FlushAsync();
        }
    }

    [Theory]
    [InlineData("qcow2")]
    [InlineData("raw")]
    public async Task Overwrites_are_made_durable_by_ring_fsyncs_started_where_they_completed(string format)
    {
        Assert.True(CacheModeInfo.TryParseAio("io_uring", out var aio));
        var engine = HostIoEngine.Create(aio);
        Assert.Equal(AioEngine.IoUring, engine.Effective);
        var path = _temp.File("disk." + format);
        const long size = 8 << 20;
        if (format == "qcow2") Qcow2Creator.Create(path, new Qcow2CreateOptions { Size = size, ClusterSize = 65536 });
        else using (var stream = File.Create(path)) stream.SetLength(size);
        BarrierCountingFile? counting = null;
        var device = ImageOpener.Open(path, new ImageOpenOptions
        {
            Format = format,
            CacheMode = CacheMode.DirectSync,
            MaxDirtyAge = null,
            HostFileFactory = (p, o) => p == path ? counting = new BarrierCountingFile(engine.Factory(p, o)) : engine.Factory(p, o),
        });
        var expected = new byte[Writes * 65536];
        await using (device)
        {
            // Allocate every cluster first (qcow2: ordered metadata with its synchronous barriers), so what follows are overwrites.
            await device.WriteAsync(0, new byte[expected.Length], fua: false);
            int syncBefore = Volatile.Read(ref counting!.SyncFlushes), asyncBefore = Volatile.Read(ref counting.AsyncFlushes);

            new Random(3).NextBytes(expected);
            var writes = new Task[Writes];
            for (var i = 0; i < Writes; i++)
            {
                var offset = i * 65536 + 4096 * (i % 16);
                writes[i] = device.WriteAsync(offset, expected.AsMemory(offset, 4096), fua: false).AsTask();
            }
            await Task.WhenAll(writes).WaitAsync(TimeSpan.FromSeconds(30));
            for (var i = 0; i < Writes; i++)
            {
                var keep = 4096 * (i % 16);
                expected.AsSpan(i * 65536, keep).Clear();
                expected.AsSpan(i * 65536 + keep + 4096, 65536 - keep - 4096).Clear();
            }

            var syncs = Volatile.Read(ref counting.SyncFlushes) - syncBefore;
            var ringSyncs = Volatile.Read(ref counting.AsyncFlushes) - asyncBefore;
            Assert.Equal(0, syncs); // no thread waited in a synchronous fdatasync
            Assert.InRange(ringSyncs, 1, Writes); // at least one, and shared when writes complete together
            // The first sync after a write starts on the completion thread that completed it: no hop to the pool first.
            Assert.True(Volatile.Read(ref counting.AsyncFlushesOnCompletionThread) > 0,
                $"none of {ringSyncs} ring syncs started on the completion thread");

            var back = new byte[expected.Length];
            await device.ReadAsync(0, back);
            Assert.Equal(expected, back);
        }
        if (format == "qcow2") QemuImgTool.AssertClean(path);
    }
}
