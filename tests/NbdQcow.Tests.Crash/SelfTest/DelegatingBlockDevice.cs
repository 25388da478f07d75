using NbdQcow.Image;

namespace NbdQcow.Tests.Crash.SelfTest;

/// <summary>Passes every call to an inner device; subclasses break one thing on purpose.</summary>
public abstract class DelegatingBlockDevice(IBlockDevice inner) : IBlockDevice
{
    protected IBlockDevice Inner => inner;
    public long Size => inner.Size;
    public BlockDeviceFeatures Features => inner.Features;
    public BlockSizeHints BlockSizes => inner.BlockSizes;
    public virtual ValueTask ReadAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken = default) => inner.ReadAsync(offset, buffer, cancellationToken);
    public virtual ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, bool fua, CancellationToken cancellationToken = default) => inner.WriteAsync(offset, data, fua, cancellationToken);
    public virtual ValueTask ZeroAsync(long offset, long length, ZeroFlags flags, CancellationToken cancellationToken = default) => inner.ZeroAsync(offset, length, flags, cancellationToken);
    public virtual ValueTask TrimAsync(long offset, long length, bool fua, CancellationToken cancellationToken = default) => inner.TrimAsync(offset, length, fua, cancellationToken);
    public virtual ValueTask FlushAsync(CancellationToken cancellationToken = default) => inner.FlushAsync(cancellationToken);
    public ValueTask CacheAsync(long offset, long length, CancellationToken cancellationToken = default) => inner.CacheAsync(offset, length, cancellationToken);
    public ValueTask GetBlockStatusAsync(long offset, long length, List<BlockExtent> extents, CancellationToken cancellationToken = default) => inner.GetBlockStatusAsync(offset, length, extents, cancellationToken);
    public ValueTask DisposeAsync() => inner.DisposeAsync();
}
