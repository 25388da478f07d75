namespace NbdQcow.HostIo;

/// <summary>
/// A host file opened under an <see cref="ImageLock"/>: the lock is taken before the file is opened (so a refused
/// image is never opened, let alone written) and released when the file is disposed.
/// </summary>
public sealed class LockedHostFile : HostFileDecorator
{
    private readonly ImageLock _lock;

    private LockedHostFile(IHostFile inner, ImageLock imageLock) : base(inner)
    {
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

    public override void Dispose()
    {
        try
        {
            Inner.Dispose();
        }
        finally
        {
            _lock.Dispose();
        }
    }
}
