using NbdQcow.Cache;
using NbdQcow.HostIo;

namespace NbdQcow.Tests.Unit.HostIo;

/// <summary>
/// The io_uring engine against real files, side by side with the threads engine: odd offsets and unaligned memory
/// with many requests in flight, fallocate between them, O_DIRECT, the same errors as threads, the burst batch,
/// the sticky sync latch over it, and the fallback when the kernel refuses io_uring.
/// </summary>
public sealed class IoUringEngineTests : IDisposable
{
    private readonly TempDirectory _temp = new("iouring", diskBacked: true);

    public void Dispose() => _temp.Dispose();

    private string NewFile(long size)
    {
        var path = _temp.File(Guid.NewGuid().ToString("N") + ".img");
        using (var stream = File.Create(path)) stream.SetLength(size);
        return path;
    }

    private static HostIoEngine Engine(string name)
    {
        Assert.True(CacheModeInfo.TryParseAio(name, out var aio));
        var engine = HostIoEngine.Create(aio);
        // The engine tests must test io_uring, not a silent fallback.
        Assert.Equal(aio, engine.Effective);
        return engine;
    }

    [Theory]
    [InlineData("io_uring", false)]
    [InlineData("io_uring", true)]
    [InlineData("threads", false)]
    [InlineData("threads", true)]
    public async Task Odd_reads_writes_and_fallocates_with_many_in_flight_match_an_in_memory_model(string engineName, bool direct)
    {
        const int slots = 16;
        const int slotSize = 128 << 10;
        const int size = slots * slotSize;
        var path = NewFile(size);
        var model = new byte[size];
        var random = new Random(7);
        var engine = Engine(engineName);
        using (var file = engine.Factory(path, new HostFileOptions(ReadOnly: false, Direct: direct)))
        {
            Assert.Equal(direct, file.IsDirect);
            for (var round = 0; round < 12; round++)
            {
                // One write per slot, all in flight at once: disjoint, so the model does not depend on their order.
                // Half are block-aligned (the ring itself), half odd; memory starts at odd offsets too (bounce buffers).
                var writes = new List<Task>();
                for (var slot = 0; slot < slots; slot++)
                {
                    var aligned = random.Next(2) == 0;
                    var length = aligned ? 4096 * random.Next(1, 16) : random.Next(1, 40000);
                    var offset = slot * slotSize + (aligned ? 4096 * random.Next(0, (slotSize - length) / 4096) : random.Next(0, slotSize - length));
                    var memoryShift = random.Next(0, 3) * 7;
                    var backing = new byte[length + memoryShift];
                    random.NextBytes(backing);
                    var data = backing.AsMemory(memoryShift, length);
                    data.Span.CopyTo(model.AsSpan(offset));
                    writes.Add(file.WriteAsync(offset, data).AsTask());
                }
                await Task.WhenAll(writes);

                // fallocate at odd offsets between the bursts.
                var zeroOffset = random.Next(0, size - 70000);
                var zeroLength = random.Next(1, 70000);
                var zeroed = (round % 3) switch
                {
                    0 => file.TryZeroRange(zeroOffset, zeroLength),
                    1 => file.TryPunchHole(zeroOffset, zeroLength),
                    _ => file.TryAllocateZeroed(zeroOffset, zeroLength),
                };
                if (zeroed) model.AsSpan(zeroOffset, zeroLength).Clear();

                var reads = new List<Task>();
                var checks = new List<(int Offset, byte[] Buffer, int Shift, int Length)>();
                for (var i = 0; i < 16; i++)
                {
                    var length = random.Next(1, 70000);
                    var offset = i % 4 == 0 ? 4096 * random.Next(0, (size - length) / 4096) : random.Next(0, size - length);
                    if (i % 4 == 0) length = Math.Max(4096, length / 4096 * 4096);
                    var shift = random.Next(0, 2) * 5;
                    var buffer = new byte[length + shift];
                    checks.Add((offset, buffer, shift, length));
                    reads.Add(file.ReadAsync(offset, buffer.AsMemory(shift, length)).AsTask());
                }
                await Task.WhenAll(reads);
                foreach (var (offset, buffer, shift, length) in checks)
                    Assert.True(model.AsSpan(offset, length).SequenceEqual(buffer.AsSpan(shift, length)), $"round {round}: read {offset}+{length}");
            }
            await file.FlushAsync();
            Assert.Equal(size, file.Length);
        }
        Assert.True(File.ReadAllBytes(path).AsSpan().SequenceEqual(model));
    }

    [Theory]
    [InlineData("io_uring")]
    [InlineData("threads")]
    public async Task A_read_past_the_end_of_file_reads_zeroes_after_the_data(string engineName)
    {
        var path = _temp.File("short.img");
        File.WriteAllBytes(path, [1, 2, 3, 4, 5]);
        using var file = Engine(engineName).Factory(path, new HostFileOptions(ReadOnly: true, Direct: false));
        var buffer = new byte[9000];
        Array.Fill(buffer, (byte)0xEE);
        await file.ReadAsync(2, buffer);
        Assert.Equal([3, 4, 5], buffer[..3]);
        Assert.All(buffer[3..], b => Assert.Equal(0, b));
    }

    private static async Task<HostIoException> FailureOf(Func<IHostFile, ValueTask> call, IHostFile file)
    {
        return await Assert.ThrowsAsync<HostIoException>(async () => await call(file));
    }

    [Fact]
    public async Task Errors_carry_the_same_operation_and_errno_as_the_threads_engine()
    {
        var threads = Engine("threads");
        var ring = Engine("io_uring");
        var options = new HostFileOptions(ReadOnly: false, Direct: false);
        Func<IHostFile, ValueTask>[] calls =
        [
            f => f.WriteAsync(0, new byte[4096]),
            f => f.WriteAsync(3, new byte[100]),
            f => f.FlushAsync(),
        ];
        foreach (var call in calls)
        {
            using var a = threads.Factory("/dev/full", options);
            using var b = ring.Factory("/dev/full", options);
            var expected = await FailureOf(call, a);
            var actual = await FailureOf(call, b);
            Assert.Equal(expected.Operation, actual.Operation);
            Assert.Equal(expected.Errno, actual.Errno);
            Assert.Equal("/dev/full", actual.FilePath);
        }
        using (var full = ring.Factory("/dev/full", options))
        {
            var noSpace = await FailureOf(f => f.WriteAsync(0, new byte[512]), full);
            Assert.True(noSpace.IsNoSpace, noSpace.Message);
            Assert.Equal("pwrite", noSpace.Operation);
        }

        var readOnly = new HostFileOptions(ReadOnly: true, Direct: false);
        var path = NewFile(8192);
        using (var a = threads.Factory(path, readOnly))
        using (var b = ring.Factory(path, readOnly))
        {
            var expected = await FailureOf(f => f.WriteAsync(0, new byte[10]), a);
            var actual = await FailureOf(f => f.WriteAsync(0, new byte[10]), b);
            Assert.Equal((expected.Operation, expected.Errno), (actual.Operation, actual.Errno));
        }
    }

    [Fact]
    public async Task A_failed_fdatasync_through_the_ring_latches_and_every_later_flush_is_refused()
    {
        var latch = new SyncFailureLatch();
        var factory = latch.Wrap(Engine("io_uring").Factory);
        using var file = factory("/dev/full", new HostFileOptions(ReadOnly: false, Direct: false));
        var first = await FailureOf(f => f.FlushAsync(), file);
        Assert.Equal("fdatasync", first.Operation);
        Assert.True(latch.HasFailed);
        Assert.Same(first, latch.Failure);
        var second = await FailureOf(f => f.FlushAsync(), file);
        Assert.Contains("refused", second.Message);
        Assert.Throws<HostIoException>(() => file.Flush());
    }

    [Fact]
    public async Task An_open_batch_holds_submissions_until_the_last_close_then_they_complete()
    {
        var engine = Engine("io_uring");
        var path = NewFile(1 << 20);
        using var file = engine.Factory(path, new HostFileOptions(ReadOnly: false, Direct: false));
        var data = new byte[4096];
        new Random(3).NextBytes(data);
        engine.Batch.Open();
        engine.Batch.Open();
        var first = file.WriteAsync(0, data).AsTask();
        var second = file.WriteAsync(8192, data).AsTask();
        await Task.Delay(50);
        Assert.False(first.IsCompleted);
        Assert.Equal(2, engine.Batch.HeldCount);
        engine.Batch.Close();
        Assert.Equal(2, engine.Batch.HeldCount);
        engine.Batch.Close();
        Assert.Equal(0, engine.Batch.HeldCount);
        await Task.WhenAll(first, second).WaitAsync(TimeSpan.FromSeconds(10));
        var back = new byte[4096];
        await file.ReadAsync(8192, back);
        Assert.Equal(data, back);
        // With no batch open a submission goes in at once.
        await file.WriteAsync(4096, data).AsTask().WaitAsync(TimeSpan.FromSeconds(10));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_lone_read_on_an_idle_ring_is_done_before_the_call_returns_and_one_in_a_burst_goes_through_the_ring(bool direct)
    {
        var engine = Engine("io_uring");
        var path = NewFile(1 << 20);
        using var file = engine.Factory(path, new HostFileOptions(ReadOnly: false, Direct: direct));
        var data = new byte[4096];
        var back = new byte[4096];
        var random = new Random(5);
        for (var i = 0; i < 16; i++)
        {
            // Queue depth 1: nothing in flight, no batch open. A ring submission would still be pending here (its
            // completion comes from the completion thread); the plain pread is done.
            random.NextBytes(data);
            file.Write(i * 8192, data); // synchronous: an awaited ring write would continue on the completion thread
            var read = file.ReadAsync(i * 8192, back);
            Assert.True(read.IsCompletedSuccessfully, $"read {i} went through the ring");
            Assert.Equal(data, back);
        }
        // With a batch open (a burst of requests being received) a read goes through the ring as before.
        engine.Batch.Open();
        var held = file.ReadAsync(0, new byte[4096]).AsTask();
        Assert.Equal(1, engine.Batch.HeldCount);
        engine.Batch.Close();
        await held.WaitAsync(TimeSpan.FromSeconds(10));
    }

    [Fact]
    public async Task A_refused_io_uring_falls_back_to_threads_with_one_log_line()
    {
        var lines = new List<string>();
        Environment.SetEnvironmentVariable(HostIoEngine.SimulateNoIoUringVariable, "1");
        HostIoEngine engine;
        try
        {
            engine = HostIoEngine.Create(AioEngine.IoUring, lines.Add);
        }
        finally
        {
            Environment.SetEnvironmentVariable(HostIoEngine.SimulateNoIoUringVariable, null);
        }
        Assert.Equal(AioEngine.IoUring, engine.Requested);
        Assert.Equal(AioEngine.Threads, engine.Effective);
        var path = NewFile(1 << 16);
        using (var file = engine.Factory(path, new HostFileOptions(ReadOnly: false, Direct: true)))
        {
            Assert.IsType<HostFile>(file);
            await file.WriteAsync(4096, new byte[] { 9, 9, 9 });
            await file.FlushAsync();
        }
        var line = Assert.Single(lines);
        Assert.Contains("errno 38", line);
        Assert.Contains("threads", line);
        Assert.Equal(9, File.ReadAllBytes(path)[4097]);
    }
}
