using NbdQcow.HostIo;

namespace NbdQcow.Tests.Unit.MetadataCache;

/// <summary>
/// An in-memory host file that logs every write and barrier, and keeps both the "page cache" view and the
/// durable view (what survives a power loss if every unsynced write is lost).
/// </summary>
public sealed class RecordingMemoryHostFile : IHostFile
{
    private readonly Lock _lock = new();
    private byte[] _data = [];
    private byte[] _durable = [];
    private long _length;

    public RecordingMemoryHostFile() { }

    /// <summary>Starts with <paramref name="content"/>, already durable.</summary>
    public RecordingMemoryHostFile(byte[] content)
    {
        _data = (byte[])content.Clone();
        _durable = (byte[])content.Clone();
        _length = content.Length;
    }

    public string Path => "memory";

    /// <summary>The durable view as a whole file (what a power loss right now would leave).</summary>
    public byte[] DurableImage() { lock (_lock) return (byte[])_durable.Clone(); }
    public bool IsDirect => false;
    public bool IsReadOnly => false;
    public long Length { get { lock (_lock) return _length; } }

    /// <summary>"W offset length" or "F" per operation, in order.</summary>
    public List<string> Log { get; } = new();
    public int Reads;
    public int Barriers;

    public void ClearLog() { lock (_lock) Log.Clear(); }

    public byte[] DurableBytes(long offset, int length)
    {
        lock (_lock)
        {
            var result = new byte[length];
            var available = (int)Math.Clamp(_durable.Length - offset, 0, length);
            if (available > 0) _durable.AsSpan((int)offset, available).CopyTo(result);
            return result;
        }
    }

    public void Read(long offset, Span<byte> buffer)
    {
        lock (_lock)
        {
            Reads++;
            buffer.Clear();
            var available = (int)Math.Clamp(_length - offset, 0, buffer.Length);
            if (available > 0) _data.AsSpan((int)offset, available).CopyTo(buffer);
        }
    }

    public void Write(long offset, ReadOnlySpan<byte> data)
    {
        lock (_lock)
        {
            if (offset + data.Length > int.MaxValue) throw new IOException("memory file limited to 2 GiB");
            Log.Add($"W {offset} {data.Length}");
            var end = offset + data.Length;
            if (end > _data.Length) Array.Resize(ref _data, (int)Math.Max(end, _data.Length * 2L));
            data.CopyTo(_data.AsSpan((int)offset));
            _length = Math.Max(_length, end);
        }
    }

    public void Flush()
    {
        lock (_lock)
        {
            Log.Add("F");
            _durable = _data.AsSpan(0, (int)_length).ToArray();
            Barriers++;
        }
    }

    public void SetLength(long length)
    {
        lock (_lock)
        {
            if (length > _data.Length) Array.Resize(ref _data, (int)length);
            else _data.AsSpan((int)length).Clear();
            _length = length;
        }
    }

    /// <summary>False emulates a file system without hole punching: freed clusters keep their old bytes.</summary>
    public bool PunchHoleSupported { get; set; } = true;

    public bool TryPunchHole(long offset, long length)
    {
        if (!PunchHoleSupported) return false;
        lock (_lock)
        {
            var end = Math.Min(offset + length, _length);
            if (end > offset) _data.AsSpan((int)offset, (int)(end - offset)).Clear();
            return true;
        }
    }

    public bool TryZeroRange(long offset, long length) => TryPunchHole(offset, length);

    public bool TryAllocateZeroed(long offset, long length)
    {
        lock (_lock)
        {
            Log.Add($"Z {offset} {length}");
            if (offset + length > _data.Length) Array.Resize(ref _data, (int)Math.Max(offset + length, _data.Length * 2L));
            _data.AsSpan((int)offset, (int)length).Clear();
            _length = Math.Max(_length, offset + length);
            return true;
        }
    }
    public long SeekData(long offset) => offset < Length ? offset : Length;
    public long SeekHole(long offset) => Length;
    public void Dispose() { }
}
