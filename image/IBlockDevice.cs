namespace NbdQcow.Image;

/// <summary>
/// One node of an export's block stack (format node over a host file). All methods are safe to call
/// concurrently; implementations may complete synchronously. Errors are reported as
/// <see cref="BlockDeviceException"/> so the server can send the right NBD error and keep the connection.
/// Offsets and lengths are validated by the caller against <see cref="Size"/> before the call.
/// </summary>
public interface IBlockDevice : IAsyncDisposable
{
    /// <summary>Virtual size in bytes.</summary>
    long Size { get; }

    BlockDeviceFeatures Features { get; }

    /// <summary>Preferred/minimum I/O sizes, for NBD_INFO_BLOCK_SIZE.</summary>
    BlockSizeHints BlockSizes { get; }

    ValueTask ReadAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken = default);

    /// <summary>Writes data; with <paramref name="fua"/> the data (and what maps it) is durable before completion.</summary>
    ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, bool fua, CancellationToken cancellationToken = default);

    /// <summary>Makes the range read as zero. See <see cref="ZeroFlags"/>.</summary>
    ValueTask ZeroAsync(long offset, long length, ZeroFlags flags, CancellationToken cancellationToken = default);

    /// <summary>Hint that the range is unused; afterwards it may read as anything previously written there or zero.</summary>
    ValueTask TrimAsync(long offset, long length, bool fua, CancellationToken cancellationToken = default);

    /// <summary>Makes every write completed before this call durable (per the cache mode).</summary>
    ValueTask FlushAsync(CancellationToken cancellationToken = default);

    /// <summary>Prefetch hint (NBD_CMD_CACHE).</summary>
    ValueTask CacheAsync(long offset, long length, CancellationToken cancellationToken = default);

    /// <summary>
    /// Appends extents describing [offset, offset+length) to <paramref name="extents"/>, in order, without gaps,
    /// covering at least one byte; may stop early (a prefix is a valid answer).
    /// </summary>
    ValueTask GetBlockStatusAsync(long offset, long length, List<BlockExtent> extents, CancellationToken cancellationToken = default);
}
