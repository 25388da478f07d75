using System.IO.Pipelines;
using NbdQcow.Cache;
using NbdQcow.HostIo;
using NbdQcow.Image;
using NbdQcow.Protocol.Client;
using NbdQcow.Server.Exports;
using NbdQcow.Server.Nbd;

namespace NbdQcow.Tests.Unit.Server;

/// <summary>
/// Where a READ or plain WRITE starts. On an io_uring export it runs on the thread that received it up to its host
/// submission (no thread-pool hand-off); on a threads export, whose I/O blocks in pread/pwrite, it goes to the pool so
/// requests overlap.
/// The session runs over in-memory pipes whose reader continues inline, so "the receiving thread" is the thread
/// that writes the client's requests: a dedicated thread, never a pool thread.
/// </summary>
public sealed class RequestDispatchTests : IDisposable
{
    private const int ImageSize = 1 << 20;
    private const int Requests = 8;

    private readonly string _dir = Directory.CreateTempSubdirectory("nbdqcow-dispatch-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Theory]
    [InlineData(AioEngine.IoUring, false, false, CacheMode.Writeback)]
    [InlineData(AioEngine.Threads, false, true, CacheMode.Writeback)]
    [InlineData(AioEngine.IoUring, true, false, CacheMode.Writeback)]
    [InlineData(AioEngine.Threads, true, true, CacheMode.Writeback)]
    // A write-through mode ends every WRITE in an fdatasync: with io_uring that goes through the ring too.
    [InlineData(AioEngine.IoUring, true, false, CacheMode.Writethrough)]
    [InlineData(AioEngine.Threads, true, true, CacheMode.Writethrough)]
    public async Task Requests_in_flight_start_on_the_receiving_thread_only_with_io_uring(AioEngine aio, bool writes, bool expectPool, CacheMode mode)
    {
        var engine = HostIoEngine.Create(aio);
        Assert.Equal(aio, engine.Effective);
        var path = Path.Combine(_dir, "disk.raw");
        var content = new byte[ImageSize];
        new Random(7).NextBytes(content);
        await File.WriteAllBytesAsync(path, content);
        var image = ImageOpener.Open(path, new ImageOpenOptions { Format = "raw", CacheMode = mode, MaxDirtyAge = null, HostFileFactory = engine.Factory });
        var device = new RecordingDevice(image);
        await using var registry = new ExportRegistry();
        registry.Add(new NbdExport("disk", device, hostIoBatch: engine.Batch) { SubmittingEngine = engine });

        var inline = new PipeOptions(readerScheduler: PipeScheduler.Inline, writerScheduler: PipeScheduler.Inline,
            pauseWriterThreshold: 0, useSynchronizationContext: false);
        var toServer = new Pipe(inline);
        var fromServer = new Pipe(inline);
        var session = new NbdSession(new PipePair(toServer.Reader, fromServer.Writer), registry,
            new NbdSessionOptions { MaxInFlight = 16 }, ServerLog.Quiet, "test");
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        var run = session.RunAsync(stop.Token, stop.Token);
        var client = await NbdClient.ConnectAsync(new PipePair(fromServer.Reader, toServer.Writer).AsStream(),
            new NbdClientOptions { ExportName = "disk" }, stop.Token);

        // A FLUSH held by the device keeps a request in flight, so none of the others is a lone one (which always runs
        // where it was received). They are sent from a dedicated thread: the session handles each inline there.
        var flush = client.FlushAsync(stop.Token);
        await device.FlushEntered.Task.WaitAsync(stop.Token);
        var buffers = Enumerable.Range(0, Requests).Select(i => writes ? Pattern(4096, 100 + i) : new byte[4096]).ToArray();
        var requests = new Task[Requests];
        var sender = new Thread(() =>
        {
            for (var i = 0; i < Requests; i++)
            {
                requests[i] = writes ? client.WriteAsync((ulong)(i * 65536), buffers[i], cancellationToken: stop.Token)
                    : client.ReadAsync((ulong)(i * 65536), buffers[i], cancellationToken: stop.Token);
            }
        });
        sender.Start();
        sender.Join();
        await Task.WhenAll(requests).WaitAsync(stop.Token);
        device.ReleaseFlush();
        await flush.WaitAsync(stop.Token);

        Assert.Equal(Requests, device.StartedOnPool.Count);
        Assert.All(device.StartedOnPool, onPool => Assert.Equal(expectPool, onPool));

        await client.DisposeAsync();
        await toServer.Writer.CompleteAsync();
        await run.WaitAsync(stop.Token);
        await registry.DisposeAsync();
        var after = await File.ReadAllBytesAsync(path);
        for (var i = 0; i < Requests; i++)
        {
            Assert.Equal(writes ? buffers[i] : content.AsSpan(i * 65536, 4096).ToArray(), after.AsSpan(i * 65536, 4096).ToArray());
            if (!writes) Assert.Equal(content.AsSpan(i * 65536, 4096).ToArray(), buffers[i]);
        }
    }

    private static byte[] Pattern(int length, int seed)
    {
        var data = new byte[length];
        new Random(seed).NextBytes(data);
        return data;
    }

    /// <summary>The real image, noting for every READ and WRITE whether it started on a pool thread, with FLUSH held until released.</summary>
    private sealed class RecordingDevice(IBlockDevice inner) : IBlockDevice
    {
        private readonly TaskCompletionSource _flushGate = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public TaskCompletionSource FlushEntered { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public System.Collections.Concurrent.ConcurrentQueue<bool> StartedOnPool { get; } = new();

        public long Size => inner.Size;

        public BlockDeviceFeatures Features => inner.Features;

        public BlockSizeHints BlockSizes => inner.BlockSizes;

        public void ReleaseFlush() => _flushGate.TrySetResult();

        public ValueTask ReadAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            StartedOnPool.Enqueue(Thread.CurrentThread.IsThreadPoolThread);
            return inner.ReadAsync(offset, buffer, cancellationToken);
        }

        public async ValueTask FlushAsync(CancellationToken cancellationToken = default)
        {
            FlushEntered.TrySetResult();
            await _flushGate.Task.WaitAsync(cancellationToken);
            await inner.FlushAsync(cancellationToken);
        }

        public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, bool fua, CancellationToken cancellationToken = default)
        {
            StartedOnPool.Enqueue(Thread.CurrentThread.IsThreadPoolThread);
            return inner.WriteAsync(offset, data, fua, cancellationToken);
        }

        public ValueTask ZeroAsync(long offset, long length, ZeroFlags flags, CancellationToken cancellationToken = default)
            => inner.ZeroAsync(offset, length, flags, cancellationToken);

        public ValueTask TrimAsync(long offset, long length, bool fua, CancellationToken cancellationToken = default)
            => inner.TrimAsync(offset, length, fua, cancellationToken);

        public ValueTask CacheAsync(long offset, long length, CancellationToken cancellationToken = default)
            => inner.CacheAsync(offset, length, cancellationToken);

        public ValueTask GetBlockStatusAsync(long offset, long length, List<BlockExtent> extents, CancellationToken cancellationToken = default)
            => inner.GetBlockStatusAsync(offset, length, extents, cancellationToken);

        public ValueTask DisposeAsync() => inner.DisposeAsync();
    }

    /// <summary>One side of an in-memory connection: what it reads and where it writes.</summary>
    private sealed class PipePair(PipeReader input, PipeWriter output) : IDuplexPipe
    {
        public PipeReader Input => input;

        public PipeWriter Output => output;

        public Stream AsStream() => new PipePairStream(input, output);
    }

    private sealed class PipePairStream(PipeReader input, PipeWriter output) : Stream
    {
        private readonly Stream _read = input.AsStream();
        private readonly Stream _write = output.AsStream();

        public override bool CanRead => true;

        public override bool CanSeek => false;

        public override bool CanWrite => true;

        public override long Length => throw new NotSupportedException();

        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override void Flush() => _write.Flush();

        public override Task FlushAsync(CancellationToken cancellationToken) => _write.FlushAsync(cancellationToken);

        public override int Read(byte[] buffer, int offset, int count) => _read.Read(buffer, offset, count);

        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) => _read.ReadAsync(buffer, cancellationToken);

        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken)
            => _read.ReadAsync(buffer, offset, count, cancellationToken);

        public override void Write(byte[] buffer, int offset, int count) => _write.Write(buffer, offset, count);

        public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default) => _write.WriteAsync(buffer, cancellationToken);

        public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken)
            => _write.WriteAsync(buffer, offset, count, cancellationToken);

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        protected override void Dispose(bool disposing)
        {
            if (disposing)
            {
                _read.Dispose();
                _write.Dispose();
            }
            base.Dispose(disposing);
        }
    }
}
