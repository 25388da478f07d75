using NbdQcow.HostIo;

namespace NbdQcow.Fuzz;

/// <summary>
/// A host file held in memory, so a fuzz iteration touches no disk. Writes past <see cref="MaxLength"/> fail with
/// <see cref="MemoryFileFullException"/>, as a full disk would: a hostile image cannot make an iteration grow without bound.
/// </summary>
public sealed class MemoryHostFile : IHostFile
{
    public const long MaxLength = 64L << 20;

    private readonly Lock _lock = new();
    private byte[] _data;
    private long _length;

    public MemoryHostFile(string path, byte[] content, bool readOnly)
    {
        Path = path;
        _data = content;
        _length = content.Length;
        IsReadOnly = readOnly;
    }

    public string Path { get; }
    public bool IsDirect => false;
    public bool IsReadOnly { get; }
    public long Length { get { lock (_lock) return _length; } }

    public void Read(long offset, Span<byte> buffer)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(offset);
        lock (_lock)
        {
            buffer.Clear();
            long available = Math.Clamp(_length - offset, 0, buffer.Length);
            if (available > 0) _data.AsSpan((int)offset, (int)available).CopyTo(buffer);
        }
    }

    public void Write(long offset, ReadOnlySpan<byte> data)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(offset);
        if (IsReadOnly) throw new IOException($"{Path}: opened read-only");
        lock (_lock)
        {
            long end = offset + data.Length;
            Grow(end);
            data.CopyTo(_data.AsSpan((int)offset));
            _length = Math.Max(_length, end);
        }
    }

    public void Flush() { }

    public void SetLength(long length)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        lock (_lock)
        {
            Grow(length);
            if (length < _length) _data.AsSpan((int)length, (int)(_length - length)).Clear();
            _length = length;
        }
    }

    public bool TryPunchHole(long offset, long length) => TryZeroRange(offset, length);

    public bool TryZeroRange(long offset, long length)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(offset);
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        lock (_lock)
        {
            long end = Math.Min(offset + length, _length);
            if (end > offset) _data.AsSpan((int)offset, (int)(end - offset)).Clear();
        }
        return true;
    }

    public bool TryAllocateZeroed(long offset, long length)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(offset);
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        lock (_lock)
        {
            TryZeroRange(offset, length);
            long end = offset + length;
            Grow(end);
            _length = Math.Max(_length, end);
        }
        return true;
    }

    public long SeekData(long offset) => Math.Min(offset, Length);

    public long SeekHole(long offset) => Length;

    public void Dispose() { }

    private void Grow(long end)
    {
        if (end > MaxLength) throw new MemoryFileFullException($"{Path}: no space left (memory file limited to {MaxLength} bytes)");
        if (end > _data.Length) Array.Resize(ref _data, (int)Math.Min(MaxLength, Math.Max(end, _data.Length * 2L)));
    }
}
