using NbdQcow.HostIo;

namespace NbdQcow.Tests.Faults;

/// <summary>
/// A host file decorator that fails the calls its <see cref="FaultPlan"/> picks with EIO, ENOSPC, EDQUOT or a
/// short write, and otherwise forwards to the real file. A failed call changes nothing, except a short write,
/// which stores the first half of its data as a real short pwrite would. With
/// <see cref="FaultPlan.DropsUnsyncedWritesOnFailedSync"/> a failed fdatasync also undoes this file's writes since
/// its last good one (rewriting the old bytes), as the kernel does when it drops pages whose writeback failed.
/// </summary>
public sealed class FaultInjectingHostFile(IHostFile inner, FaultPlan plan) : IHostFile
{
    private readonly List<(long Offset, byte[] Before)> _unsynced = [];
    private const int Eio = 5;
    private const int Enospc = 28;
    private const int Edquot = 122;

    /// <summary>A factory opening real host files behind <paramref name="plan"/>.</summary>
    public static HostFileFactory Factory(FaultPlan plan) =>
        (path, options) => new FaultInjectingHostFile(HostFile.Open(path, options), plan);

    public string Path => inner.Path;

    public bool IsDirect => inner.IsDirect;

    public bool IsReadOnly => inner.IsReadOnly;

    public long Length => inner.Length;

    public void Read(long offset, Span<byte> buffer)
    {
        if (plan.ShouldFail(HostCallKind.Read)) throw Failure("pread");
        inner.Read(offset, buffer);
    }

    public void Write(long offset, ReadOnlySpan<byte> data)
    {
        if (plan.ShouldFail(HostCallKind.Write))
        {
            if (plan.Fault == HostFault.ShortWrite && data.Length > 1) WriteRemembering(offset, data[..(data.Length / 2)]);
            throw Failure("pwrite");
        }
        WriteRemembering(offset, data);
    }

    public void Flush()
    {
        if (plan.ShouldFail(HostCallKind.Flush))
        {
            DropUnsynced();
            throw Failure("fdatasync");
        }
        inner.Flush();
        lock (_unsynced) _unsynced.Clear();
    }

    public ValueTask ReadAsync(long offset, Memory<byte> buffer)
    {
        if (plan.ShouldFail(HostCallKind.Read)) throw Failure("pread");
        return inner.ReadAsync(offset, buffer);
    }

    public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data)
    {
        if (plan.ShouldFail(HostCallKind.Write))
        {
            if (plan.Fault == HostFault.ShortWrite && data.Length > 1) WriteRemembering(offset, data.Span[..(data.Length / 2)]);
            throw Failure("pwrite");
        }
        if (!plan.DropsUnsyncedWritesOnFailedSync) return inner.WriteAsync(offset, data);
        WriteRemembering(offset, data.Span);
        return ValueTask.CompletedTask;
    }

    public async ValueTask FlushAsync()
    {
        if (plan.ShouldFail(HostCallKind.Flush))
        {
            DropUnsynced();
            throw Failure("fdatasync");
        }
        await inner.FlushAsync().ConfigureAwait(false);
        lock (_unsynced) _unsynced.Clear();
    }

    private void WriteRemembering(long offset, ReadOnlySpan<byte> data)
    {
        if (plan.DropsUnsyncedWritesOnFailedSync)
        {
            var before = new byte[data.Length];
            inner.Read(offset, before);
            lock (_unsynced) _unsynced.Add((offset, before));
        }
        inner.Write(offset, data);
    }

    private void DropUnsynced()
    {
        lock (_unsynced)
        {
            for (var i = _unsynced.Count - 1; i >= 0; i--) inner.Write(_unsynced[i].Offset, _unsynced[i].Before);
            _unsynced.Clear();
        }
    }

    public void SetLength(long length)
    {
        if (plan.ShouldFail(HostCallKind.SetLength)) throw Failure("ftruncate");
        inner.SetLength(length);
    }

    public bool TryPunchHole(long offset, long length)
    {
        if (plan.ShouldFail(HostCallKind.Allocate)) throw Failure("fallocate(PUNCH_HOLE)");
        return inner.TryPunchHole(offset, length);
    }

    public bool TryZeroRange(long offset, long length)
    {
        if (plan.ShouldFail(HostCallKind.Allocate)) throw Failure("fallocate(ZERO_RANGE)");
        return inner.TryZeroRange(offset, length);
    }

    public bool TryAllocateZeroed(long offset, long length)
    {
        if (plan.ShouldFail(HostCallKind.Allocate)) throw Failure("fallocate");
        return inner.TryAllocateZeroed(offset, length);
    }

    public bool TryReserve(long offset, long length)
    {
        if (plan.ShouldFail(HostCallKind.Allocate)) throw Failure("fallocate");
        return inner.TryReserve(offset, length);
    }

    public long SeekData(long offset) => inner.SeekData(offset);

    public long SeekHole(long offset) => inner.SeekHole(offset);

    public void AdviseWillNeed(long offset, long length) => inner.AdviseWillNeed(offset, length);

    public void Dispose() => inner.Dispose();

    private HostIoException Failure(string operation) => new(operation, inner.Path, plan.Fault switch
    {
        HostFault.NoSpace or HostFault.ShortWrite => Enospc,
        HostFault.QuotaExceeded => Edquot,
        _ => Eio,
    }, "injected by the test");
}
