using NbdQcow.HostIo;

namespace NbdQcow.Tests.Crash.Recording;

/// <summary>
/// An <see cref="IHostFile"/> decorator that logs every write (offset and bytes), barrier, length change,
/// punch and zero-range, in order, with issue and completion ticks, then passes the call on.
/// </summary>
public sealed class RecordingHostFile(IHostFile inner, HostFileLog log, int fileId) : IHostFile
{
    public string Path => inner.Path;
    public bool IsDirect => inner.IsDirect;
    public bool IsReadOnly => inner.IsReadOnly;
    public long Length => inner.Length;
    public int FileId => fileId;

    public void Read(long offset, Span<byte> buffer) => inner.Read(offset, buffer);

    public void Write(long offset, ReadOnlySpan<byte> data)
    {
        var e = log.Issue(HostFileEventKind.Write, fileId, offset, data.Length, data.ToArray());
        var ok = false;
        try { inner.Write(offset, data); ok = true; }
        finally { log.Complete(e, ok); }
    }

    public async ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data)
    {
        // Issued when submitted, completed when the engine says so: the crash model sees the real overlap.
        var e = log.Issue(HostFileEventKind.Write, fileId, offset, data.Length, data.ToArray());
        var ok = false;
        try { await inner.WriteAsync(offset, data).ConfigureAwait(false); ok = true; }
        finally { log.Complete(e, ok); }
    }

    public ValueTask ReadAsync(long offset, Memory<byte> buffer) => inner.ReadAsync(offset, buffer);

    public async ValueTask FlushAsync()
    {
        var e = log.Issue(HostFileEventKind.Flush, fileId, 0, 0);
        var ok = false;
        try { await inner.FlushAsync().ConfigureAwait(false); ok = true; }
        finally { log.Complete(e, ok); }
    }

    public void Flush()
    {
        var e = log.Issue(HostFileEventKind.Flush, fileId, 0, 0);
        var ok = false;
        try { inner.Flush(); ok = true; }
        finally { log.Complete(e, ok); }
    }

    public void SetLength(long length)
    {
        var e = log.Issue(HostFileEventKind.SetLength, fileId, 0, length);
        var ok = false;
        try { inner.SetLength(length); ok = true; }
        finally { log.Complete(e, ok); }
    }

    public bool TryPunchHole(long offset, long length)
    {
        var e = log.Issue(HostFileEventKind.PunchHole, fileId, offset, length);
        var ok = false;
        try { return ok = inner.TryPunchHole(offset, length); }
        finally { log.Complete(e, ok); }
    }

    public bool TryZeroRange(long offset, long length)
    {
        var e = log.Issue(HostFileEventKind.ZeroRange, fileId, offset, length);
        var ok = false;
        try { return ok = inner.TryZeroRange(offset, length); }
        finally { log.Complete(e, ok); }
    }

    public bool TryAllocateZeroed(long offset, long length)
    {
        var e = log.Issue(HostFileEventKind.AllocateZeroed, fileId, offset, length);
        var ok = false;
        try { return ok = inner.TryAllocateZeroed(offset, length); }
        finally { log.Complete(e, ok); }
    }

    public long SeekData(long offset) => inner.SeekData(offset);
    public long SeekHole(long offset) => inner.SeekHole(offset);
    public void AdviseWillNeed(long offset, long length) => inner.AdviseWillNeed(offset, length);
    public void Dispose() => inner.Dispose();
}
