using NbdQcow.HostIo;

namespace NbdQcow.Tests.Unit.Journal;

/// <summary>Passes calls on, logging writes ("NAME W length") and barriers ("NAME F") of several files in one ordered list.</summary>
public sealed class OrderLoggingHostFile(IHostFile inner, string name, List<string> log) : IHostFile
{
    public string Path => inner.Path;
    public bool IsDirect => inner.IsDirect;
    public bool IsReadOnly => inner.IsReadOnly;
    public long Length => inner.Length;
    public void Read(long offset, Span<byte> buffer) => inner.Read(offset, buffer);

    public void Write(long offset, ReadOnlySpan<byte> data)
    {
        lock (log) log.Add(name == "journal" ? "journal W" : $"{name} W {data.Length}");
        inner.Write(offset, data);
    }

    public void Flush()
    {
        lock (log) log.Add($"{name} F");
        inner.Flush();
    }

    public void SetLength(long length) => inner.SetLength(length);
    public bool TryPunchHole(long offset, long length) => inner.TryPunchHole(offset, length);
    public bool TryZeroRange(long offset, long length) => inner.TryZeroRange(offset, length);

    public bool TryAllocateZeroed(long offset, long length)
    {
        lock (log) log.Add($"{name} Z {length}");
        return inner.TryAllocateZeroed(offset, length);
    }
    public long SeekData(long offset) => inner.SeekData(offset);
    public long SeekHole(long offset) => inner.SeekHole(offset);
    public void Dispose() => inner.Dispose();
}
