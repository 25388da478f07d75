using NbdQcow.HostIo;

namespace NbdQcow.Tests.Unit.Raw;

/// <summary>Passes calls to a real host file and counts writes and barriers, to check when a mode syncs.</summary>
internal sealed class CountingHostFile(IHostFile inner) : IHostFile
{
    public int Writes;
    public int Flushes;
    public int Punches;

    /// <summary>Runs before each fdatasync (a test makes syncs slow with it).</summary>
    public Action? BeforeFlush;

    public string Path => inner.Path;
    public bool IsDirect => inner.IsDirect;
    public bool IsReadOnly => inner.IsReadOnly;
    public long Length => inner.Length;
    public void Read(long offset, Span<byte> buffer) => inner.Read(offset, buffer);
    public void Write(long offset, ReadOnlySpan<byte> data) { inner.Write(offset, data); Interlocked.Increment(ref Writes); }
    public void Flush() { BeforeFlush?.Invoke(); inner.Flush(); Interlocked.Increment(ref Flushes); }
    public void SetLength(long length) => inner.SetLength(length);
    public bool TryPunchHole(long offset, long length) { Interlocked.Increment(ref Punches); return inner.TryPunchHole(offset, length); }
    public bool TryZeroRange(long offset, long length) => inner.TryZeroRange(offset, length);
    public bool TryAllocateZeroed(long offset, long length) => inner.TryAllocateZeroed(offset, length);
    public long SeekData(long offset) => inner.SeekData(offset);
    public long SeekHole(long offset) => inner.SeekHole(offset);
    public void Dispose() => inner.Dispose();
}
