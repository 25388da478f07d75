using System.Buffers;
using System.Runtime.CompilerServices;
using NbdQcow.HostIo.Native;

namespace NbdQcow.HostIo.IoUring;

/// <summary>
/// A host file of the io_uring engine: the data path (<see cref="ReadAsync"/>, <see cref="WriteAsync"/>,
/// <see cref="FlushAsync"/>) goes through the export's ring as IORING_OP_READ/WRITE and an FSYNC with the
/// datasync flag; everything else (metadata reads and writes, fallocate, ftruncate, lseek) is the plain
/// <see cref="HostFile"/> underneath, on the same descriptor. A flush is submitted only when called, so it covers
/// exactly the writes completed before it: nothing is linked. Errors carry the same operation names and errno as
/// the threads engine ("pread", "pwrite", "fdatasync").
/// </summary>
/// <remarks>
/// With O_DIRECT a transfer whose offset and length are block-aligned goes to the ring (through an aligned
/// bounce buffer when the memory is not aligned); an unaligned one needs the read-modify-write of partial blocks
/// that <see cref="HostFile"/> does under its edge locks, so it takes that synchronous path.
/// </remarks>
internal sealed class IoUringHostFile : IHostFile
{
    /// <summary>Largest transfer whose completion the reaper continues itself.</summary>
    private const uint InlineCompletionLimit = 64 * 1024;

    private readonly HostFile _file;
    private readonly IoUringRing _ring;
    private readonly Action _release;
    private int _disposed;

    public IoUringHostFile(HostFile file, IoUringRing ring, Action release)
    {
        _file = file;
        _ring = ring;
        _release = release;
    }

    public string Path => _file.Path;

    public bool IsDirect => _file.IsDirect;

    public bool IsReadOnly => _file.IsReadOnly;

    public long Length => _file.Length;

    public void Read(long offset, Span<byte> buffer) => _file.Read(offset, buffer);

    public void Write(long offset, ReadOnlySpan<byte> data) => _file.Write(offset, data);

    public void Flush() => _file.Flush();

    public ValueTask ReadAsync(long offset, Memory<byte> buffer)
    {
        if (buffer.IsEmpty) return ValueTask.CompletedTask;
        // A broken ring (io_uring_enter failed hard): the threads engine's synchronous call, as for unaligned direct I/O.
        // So is a lone read (queue depth 1): see RunsHere.
        if (_ring.IsBroken || (IsDirect && !IsBlockAligned(offset, buffer.Length)) || RunsHere(buffer.Length))
        {
            _file.Read(offset, buffer.Span);
            return ValueTask.CompletedTask;
        }
        return ReadThroughRingAsync(offset, buffer);
    }

    public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data)
    {
        if (IsReadOnly) throw new HostIoException("pwrite", Path, 9 /* EBADF */, "the file is open read-only");
        if (data.IsEmpty) return ValueTask.CompletedTask;
        if (_ring.IsBroken || (IsDirect && !IsBlockAligned(offset, data.Length)))
        {
            _file.Write(offset, data.Span);
            return ValueTask.CompletedTask;
        }
        return WriteThroughRingAsync(offset, data);
    }

    public ValueTask FlushAsync()
    {
        if (!_ring.IsBroken) return FlushThroughRingAsync();
        _file.Flush();
        return ValueTask.CompletedTask;
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask FlushThroughRingAsync()
    {
        while (true)
        {
            var result = await SubmitAsync(IoUringCalls.OpFsync, 0, 0, 0, IoUringCalls.FsyncDataSync).ConfigureAwait(false);
            if (result >= 0) return;
            if (result == IoUringRing.NotSubmitted) throw NotSubmitted("fdatasync");
            // Cancelled before it ran (see ReadFullyAsync): no error was consumed, so the plain fdatasync is exact.
            if (-result == IoUringCalls.ECANCELED)
            {
                _file.Flush();
                return;
            }
            // EINTR only: a failed fdatasync is never retried (the kernel may have dropped what it covered).
            if (-result == LinuxFileCalls.EINTR) continue;
            throw new HostIoException("fdatasync", Path, -result);
        }
    }

    public void SetLength(long length) => _file.SetLength(length);

    public bool TryPunchHole(long offset, long length) => _file.TryPunchHole(offset, length);

    public bool TryZeroRange(long offset, long length) => _file.TryZeroRange(offset, length);

    public bool TryAllocateZeroed(long offset, long length) => _file.TryAllocateZeroed(offset, length);

    public bool TryReserve(long offset, long length) => _file.TryReserve(offset, length);

    public long SeekData(long offset) => _file.SeekData(offset);

    public long SeekHole(long offset) => _file.SeekHole(offset);

    public void AdviseWillNeed(long offset, long length) => _file.AdviseWillNeed(offset, length);

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        try
        {
            _file.Dispose();
        }
        finally
        {
            _release();
        }
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask ReadThroughRingAsync(long offset, Memory<byte> buffer)
    {
        using var pin = buffer.Pin();
        var address = AddressOf(pin);
        if (!IsDirect || address % HostFile.DirectAlignment == 0)
        {
            await ReadFullyAsync(offset, address, buffer.Length).ConfigureAwait(false);
            return;
        }
        var bounce = HostFile.BounceBuffers.Rent();
        try
        {
            for (var done = 0; done < buffer.Length; done += HostFile.DirectChunkSize)
            {
                var count = Math.Min(buffer.Length - done, HostFile.DirectChunkSize);
                await ReadFullyAsync(offset + done, bounce, count).ConfigureAwait(false);
                NativeSpan(bounce, count).CopyTo(buffer.Span.Slice(done, count));
            }
        }
        finally
        {
            HostFile.BounceBuffers.Return(bounce);
        }
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask WriteThroughRingAsync(long offset, ReadOnlyMemory<byte> data)
    {
        using var pin = data.Pin();
        var address = AddressOf(pin);
        if (!IsDirect || address % HostFile.DirectAlignment == 0)
        {
            await WriteFullyAsync(offset, address, data.Length).ConfigureAwait(false);
            return;
        }
        var bounce = HostFile.BounceBuffers.Rent();
        try
        {
            for (var done = 0; done < data.Length; done += HostFile.DirectChunkSize)
            {
                var count = Math.Min(data.Length - done, HostFile.DirectChunkSize);
                data.Span.Slice(done, count).CopyTo(NativeSpan(bounce, count));
                await WriteFullyAsync(offset + done, bounce, count).ConfigureAwait(false);
            }
        }
        finally
        {
            HostFile.BounceBuffers.Return(bounce);
        }
    }

    /// <summary>Reads until full; a short read means end of file, and the rest reads as zero (as pread in <see cref="HostFile"/>).</summary>
    private async ValueTask ReadFullyAsync(long offset, nint address, int length)
    {
        var done = 0;
        while (done < length)
        {
            var result = await SubmitAsync(IoUringCalls.OpRead, offset + done, address + done, (uint)(length - done), 0).ConfigureAwait(false);
            if (result == IoUringRing.NotSubmitted) throw NotSubmitted("pread");
            if (result == -IoUringCalls.ECANCELED)
            {
                // The kernel cancels work it had handed to its worker threads when it cannot run it (a worker could
                // not be started, or the submitting thread exited): nothing was done, so do it here.
                result = RunSynchronously(IoUringCalls.OpRead, offset + done, address + done, length - done);
                if (result >= 0) return;
            }
            if (result < 0)
            {
                if (-result is LinuxFileCalls.EINTR or LinuxFileCalls.EAGAIN) continue;
                throw new HostIoException("pread", Path, -result);
            }
            if (result == 0) break;
            done += result;
            // With O_DIRECT a short read can only be end of file, and continuing at an unaligned offset would fail.
            if (IsDirect && done % HostFile.DirectAlignment != 0) break;
        }
        if (done < length) NativeSpan(address + done, length - done).Clear();
    }

    private async ValueTask WriteFullyAsync(long offset, nint address, int length)
    {
        var done = 0;
        while (done < length)
        {
            var result = await SubmitAsync(IoUringCalls.OpWrite, offset + done, address + done, (uint)(length - done), 0).ConfigureAwait(false);
            if (result == IoUringRing.NotSubmitted) throw NotSubmitted("pwrite");
            if (result == -IoUringCalls.ECANCELED)
            {
                // Cancelled before it ran (see ReadFullyAsync): rewriting the same bytes at the same offset is exact.
                result = RunSynchronously(IoUringCalls.OpWrite, offset + done, address + done, length - done);
                if (result >= 0) return;
            }
            if (result < 0)
            {
                if (-result is LinuxFileCalls.EINTR or LinuxFileCalls.EAGAIN) continue;
                throw new HostIoException("pwrite", Path, -result);
            }
            if (result == 0) throw new HostIoException("pwrite", Path, LinuxFileCalls.EIO, "the write made no progress");
            done += result;
        }
    }

    /// <summary>
    /// One submission; its result is the kernel's (bytes, or a negative errno). When every completion slot is taken
    /// the call runs synchronously here instead, so in-flight I/O never outgrows the completion ring.
    /// </summary>
    private ValueTask<int> SubmitAsync(byte opcode, long offset, nint address, uint length, uint flags)
    {
        var operation = _ring.TryRent();
        if (operation is null) return new ValueTask<int>(RunSynchronously(opcode, offset, address, (int)length));
        operation.Opcode = opcode;
        operation.Fd = _file.Descriptor;
        operation.Offset = offset;
        operation.Address = address;
        operation.Length = length;
        operation.OpFlags = flags;
        // What follows a small read or write is short (a copy, the image's bookkeeping, a reply of a few KiB), and so
        // is what follows a sync (the flush's bookkeeping, then the replies of the writes it made durable; a format
        // leaves the completion thread itself before synchronous work after its sync, as qcow2 does to apply frees).
        operation.CompleteInline = _ring.InlineShortCompletions && length <= InlineCompletionLimit;
        return _ring.Submit(operation);
    }

    /// <summary>The request's call never reached the kernel: an I/O error that changed nothing (no sync failure to latch).</summary>
    private HostIoException NotSubmitted(string operation) =>
        new(operation, Path, LinuxFileCalls.EIO, "io_uring_enter failed before the kernel took it; nothing was done") { NeverStarted = true };

    private int RunSynchronously(byte opcode, long offset, nint address, int length)
    {
        try
        {
            switch (opcode)
            {
                case IoUringCalls.OpRead:
                    _file.Read(offset, NativeSpan(address, length));
                    return length;
                case IoUringCalls.OpWrite:
                    _file.Write(offset, NativeSpan(address, length));
                    return length;
                default:
                    _file.Flush();
                    return 0;
            }
        }
        catch (HostIoException e)
        {
            return -e.Errno;
        }
    }

    private static unsafe nint AddressOf(in MemoryHandle pin) => (nint)pin.Pointer;

    private static unsafe Span<byte> NativeSpan(nint address, int length) => new((void*)address, length);

    /// <summary>
    /// A short read with nothing else in flight on the ring and no batch open (a client at queue depth 1) is a plain
    /// pread on the calling thread: there is nothing to share an io_uring_enter with, and the ring would only add the
    /// completion thread's wake-up to the reply's latency (as the threads engine's call returns at once). While it
    /// blocks, requests that arrive meanwhile are buffered, so the next ones see them and batch through the ring.
    /// Not writes: the receive loop closes the batch before each WRITE, so a burst of writes would find the ring idle
    /// every time and run one by one on the receiving thread. Never on the completion thread itself, which must not
    /// wait for a device; fdatasync always goes through the ring.
    /// </summary>
    private bool RunsHere(int length) =>
        length <= InlineCompletionLimit && _ring.InlineShortCompletions && !IoCompletionThread.IsCurrent && _ring.IsIdle;

    private static bool IsBlockAligned(long offset, int length) =>
        offset % HostFile.DirectAlignment == 0 && length % HostFile.DirectAlignment == 0;
}
