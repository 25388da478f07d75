namespace NbdQcow.Cache;

/// <summary>A host file whose fdatasync goes through a <see cref="SyncFailureLatch"/> shared by the image's files.</summary>
public sealed class SyncLatchedHostFile(IHostFile inner, SyncFailureLatch latch) : IHostFile
{
    public string Path => inner.Path;

    public bool IsDirect => inner.IsDirect;

    public bool IsReadOnly => inner.IsReadOnly;

    public long Length => inner.Length;

    public SyncFailureLatch Latch => latch;

    public void Read(long offset, Span<byte> buffer) => inner.Read(offset, buffer);

    public void Write(long offset, ReadOnlySpan<byte> data) => inner.Write(offset, data);

    public void Flush() => latch.Sync(inner);

    public void SetLength(long length) => inner.SetLength(length);

    public bool TryPunchHole(long offset, long length) => inner.TryPunchHole(offset, length);

    public bool TryZeroRange(long offset, long length) => inner.TryZeroRange(offset, length);

    public bool TryAllocateZeroed(long offset, long length) => inner.TryAllocateZeroed(offset, length);

    public bool TryReserve(long offset, long length) => inner.TryReserve(offset, length);

    public long SeekData(long offset) => inner.SeekData(offset);

    public long SeekHole(long offset) => inner.SeekHole(offset);

    public void AdviseWillNeed(long offset, long length) => inner.AdviseWillNeed(offset, length);

    public void Dispose() => inner.Dispose();
}
