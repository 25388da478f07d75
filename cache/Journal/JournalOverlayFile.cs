using NbdQcow.HostIo;

namespace NbdQcow.Cache.Journal;

/// <summary>
/// A read-only view of an image file with the journal's committed table images laid over it: what the file will
/// hold once the journal is replayed, without writing anything (for read-only opens, `info` and `check`, which
/// must not write while another process may own the image).
/// </summary>
public sealed class JournalOverlayFile : IHostFile
{
    private readonly IHostFile _inner;
    private readonly Dictionary<long, byte[]> _images;
    private readonly int _tableSize;
    private readonly long _length;

    /// <param name="transactions">Committed transactions in order; later images of a table replace earlier ones.</param>
    public JournalOverlayFile(IHostFile inner, int tableSize, IEnumerable<JournalTransaction> transactions)
    {
        _inner = inner;
        _tableSize = tableSize;
        _images = LatestImages(transactions);
        long length = inner.Length;
        foreach (long offset in _images.Keys) length = Math.Max(length, offset + tableSize);
        _length = length;
    }

    /// <summary>The newest image of every table the transactions touch.</summary>
    public static Dictionary<long, byte[]> LatestImages(IEnumerable<JournalTransaction> transactions)
    {
        var images = new Dictionary<long, byte[]>();
        foreach (var transaction in transactions)
            foreach (var table in transaction.Tables)
                images[table.Offset] = table.Image;
        return images;
    }

    public int ImageCount => _images.Count;

    public string Path => _inner.Path;
    public bool IsDirect => _inner.IsDirect;
    public bool IsReadOnly => true;
    public long Length => _length;

    public void Read(long offset, Span<byte> buffer)
    {
        _inner.Read(offset, buffer);
        if (_images.Count == 0 || buffer.Length == 0) return;
        long end = offset + buffer.Length;
        for (long table = offset / _tableSize * _tableSize; table < end; table += _tableSize)
        {
            if (!_images.TryGetValue(table, out var image)) continue;
            long from = Math.Max(offset, table);
            long to = Math.Min(end, table + _tableSize);
            image.AsSpan((int)(from - table), (int)(to - from)).CopyTo(buffer[(int)(from - offset)..]);
        }
    }

    public void Write(long offset, ReadOnlySpan<byte> data) => throw ReadOnly();
    public void Flush() { }
    public void SetLength(long length) => throw ReadOnly();
    public bool TryPunchHole(long offset, long length) => throw ReadOnly();
    public bool TryZeroRange(long offset, long length) => throw ReadOnly();
    public bool TryAllocateZeroed(long offset, long length) => throw ReadOnly();
    public long SeekData(long offset) => offset < _length ? offset : _length;
    public long SeekHole(long offset) => _length;
    public void Dispose() => _inner.Dispose();

    private IOException ReadOnly() => new($"{Path}: read-only view of an image with a pending journal");
}
