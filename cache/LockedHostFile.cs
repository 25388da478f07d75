namespace NbdQcow.Cache;

/// <summary>
/// A host file opened under an <see cref="ImageLock"/>: the lock is taken before the file is opened (so a refused
/// image is never opened, let alone written) and released when the file is disposed.
/// </summary>
public sealed class LockedHostFile : IHostFile
{
    private readonly IHostFile _inner;
    private readonly ImageLock _lock;

    private LockedHostFile(IHostFile inner, ImageLock imageLock)
    {
        _inner = inner;
        _lock = imageLock;
    }

    /// <summary>
    /// Opens <paramref name="path"/> through <paramref name="factory"/> holding the locks <paramref name="locking"/> asks
    /// for (a writer's, or a reader's when <paramref name="options"/> is read-only); with locking off, just opens it.
    /// </summary>
    public static IHostFile Open(HostFileFactory factory, string path, HostFileOptions options, ImageLocking locking)
    {
        var imageLock = ImageLock.Acquire(path, locking, options.ReadOnly);
        if (imageLock is null) return factory(path, options);
        try
        {
            return new LockedHostFile(factory(path, options), imageLock);
        }
        catch
        {
            imageLock.Dispose();
            throw;
        }
    }

    public string Path => _inner.Path;

    public bool IsDirect => _inner.IsDirect;

    public bool IsReadOnly => _inner.IsReadOnly;

    public long Length => _inner.Length;

    public void Read(long offset, Span<byte> buffer) => _inner.Read(offset, buffer);

    public void Write(long offset, ReadOnlySpan<byte> data) => _inner.Write(offset, data);

    public void Flush() => _inner.Flush();

    public void SetLength(long length) => _inner.SetLength(length);

    public bool TryPunchHole(long offset, long length) => _inner.TryPunchHole(offset, length);

    public bool TryZeroRange(long offset, long length) => _inner.TryZeroRange(offset, length);

    public bool TryAllocateZeroed(long offset, long length) => _inner.TryAllocateZeroed(offset, length);

    public bool TryReserve(long offset, long length) => _inner.TryReserve(offset, length);

    public long SeekData(long offset) => _inner.SeekData(offset);

    public long SeekHole(long offset) => _inner.SeekHole(offset);

    public void AdviseWillNeed(long offset, long length) => _inner.AdviseWillNeed(offset, length);

    public void Dispose()
    {
        try
        {
            _inner.Dispose();
        }
        finally
        {
            _lock.Dispose();
        }
    }
}
