namespace NbdQcow.HostIo;

/// <summary>
/// A host file that wraps another and passes every call through; a decorator overrides only what it changes.
/// Every member forwards, including the ones <see cref="IHostFile"/> gives a default body (such as
/// <see cref="IHostFile.TryReserve"/>): a wrapper that forgot one would silently turn the feature off below it.
/// A decorator that changes what <see cref="Read"/> or <see cref="Write"/> do (encryption, fault injection) must
/// override <see cref="ReadAsync"/> and <see cref="WriteAsync"/> as well: they forward to the inner file directly.
/// </summary>
public abstract class HostFileDecorator(IHostFile inner) : IHostFile
{
    protected IHostFile Inner => inner;

    public virtual string Path => inner.Path;

    public virtual bool IsDirect => inner.IsDirect;

    public virtual bool IsReadOnly => inner.IsReadOnly;

    public virtual long Length => inner.Length;

    public virtual void Read(long offset, Span<byte> buffer) => inner.Read(offset, buffer);

    public virtual void Write(long offset, ReadOnlySpan<byte> data) => inner.Write(offset, data);

    public virtual void Flush() => inner.Flush();

    public virtual ValueTask ReadAsync(long offset, Memory<byte> buffer) => inner.ReadAsync(offset, buffer);

    public virtual ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data) => inner.WriteAsync(offset, data);

    public virtual ValueTask FlushAsync() => inner.FlushAsync();

    public virtual void SetLength(long length) => inner.SetLength(length);

    public virtual bool TryPunchHole(long offset, long length) => inner.TryPunchHole(offset, length);

    public virtual bool TryZeroRange(long offset, long length) => inner.TryZeroRange(offset, length);

    public virtual bool TryAllocateZeroed(long offset, long length) => inner.TryAllocateZeroed(offset, length);

    public virtual bool TryReserve(long offset, long length) => inner.TryReserve(offset, length);

    public virtual long SeekData(long offset) => inner.SeekData(offset);

    public virtual long SeekHole(long offset) => inner.SeekHole(offset);

    public virtual void AdviseWillNeed(long offset, long length) => inner.AdviseWillNeed(offset, length);

    public virtual void Dispose() => inner.Dispose();
}
