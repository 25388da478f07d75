using NbdQcow.HostIo;

namespace NbdQcow.Fuzz;

/// <summary>A read-only view of a memory file: a write through it is a bug in the code under test, and fails loudly.</summary>
public sealed class ReadOnlyHostFile(IHostFile inner) : IHostFile
{
    public string Path => inner.Path;
    public bool IsDirect => false;
    public bool IsReadOnly => true;
    public long Length => inner.Length;
    public void Read(long offset, Span<byte> buffer) => inner.Read(offset, buffer);
    public void Write(long offset, ReadOnlySpan<byte> data) => throw new InvalidOperationException($"{Path}: write to a file opened read-only");
    public void Flush() { }
    public void SetLength(long length) => throw new InvalidOperationException($"{Path}: resize of a file opened read-only");
    public bool TryPunchHole(long offset, long length) => throw new InvalidOperationException($"{Path}: punch in a file opened read-only");
    public bool TryZeroRange(long offset, long length) => throw new InvalidOperationException($"{Path}: zero in a file opened read-only");
    public bool TryAllocateZeroed(long offset, long length) => throw new InvalidOperationException($"{Path}: allocate in a file opened read-only");
    public long SeekData(long offset) => inner.SeekData(offset);
    public long SeekHole(long offset) => inner.SeekHole(offset);
    public void Dispose() { }
}
