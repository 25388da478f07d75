using NbdQcow.HostIo;

namespace NbdQcow.Tests.Unit.Qcow2;

/// <summary>A real host file whose reads of <see cref="SlowLength"/> bytes pause first, to widen lookup-to-read races.</summary>
internal sealed class SlowReadHostFile(IHostFile inner, int slowLength, TimeSpan pause) : IHostFile
{
    public int SlowLength => slowLength;
    public string Path => inner.Path;
    public bool IsDirect => inner.IsDirect;
    public bool IsReadOnly => inner.IsReadOnly;
    public long Length => inner.Length;

    public void Read(long offset, Span<byte> buffer)
    {
        if (buffer.Length == slowLength)
            Thread.Sleep(pause);
        inner.Read(offset, buffer);
    }

    public void Write(long offset, ReadOnlySpan<byte> data) => inner.Write(offset, data);
    public void Flush() => inner.Flush();
    public void SetLength(long length) => inner.SetLength(length);
    public bool TryPunchHole(long offset, long length) => inner.TryPunchHole(offset, length);
    public bool TryZeroRange(long offset, long length) => inner.TryZeroRange(offset, length);
    public bool TryAllocateZeroed(long offset, long length) => inner.TryAllocateZeroed(offset, length);
    public long SeekData(long offset) => inner.SeekData(offset);
    public long SeekHole(long offset) => inner.SeekHole(offset);
    public void Dispose() => inner.Dispose();
}
