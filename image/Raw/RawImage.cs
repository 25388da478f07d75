using System.Runtime.CompilerServices;
using NbdQcow.Cache;
using NbdQcow.HostIo;

namespace NbdQcow.Image.Raw;

/// <summary>
/// A raw image: the host file is the disk. What a cache mode asks of a change or a FLUSH is the
/// <see cref="CacheModeLayer"/>'s; the image gives it one hook, an fdatasync of the file (flushing to the OS is
/// nothing: every write goes straight to the host file).
/// </summary>
public sealed partial class RawImage : IBlockDevice, IUnflushedChangesSource, ICacheModeTarget
{
    private const int ZeroChunk = 1 << 20;
    private static readonly byte[] Zeroes = new byte[ZeroChunk];

    private readonly IHostFile _file;
    private readonly SyncFailureLatch _syncFailures = new();
    private readonly CacheMode _mode;
    /// <summary>Null when read-only.</summary>
    private readonly CacheModeLayer? _cacheMode;
    private readonly bool _readOnly;
    // Until the first fdatasync, a FLUSH syncs even with no change since open (the page cache may hold older ones).
    private bool _neverSynced = true;
    private int _disposed;

    public RawImage(IHostFile file, ImageOpenOptions options)
    {
        // After a failed fdatasync no later flush may succeed (the kernel may have dropped what it covered).
        _file = file.IsReadOnly ? file : new SyncLatchedHostFile(file, _syncFailures);
        _mode = options.CacheMode;
        _readOnly = options.ReadOnly || file.IsReadOnly;
        Size = file.Length;
        BlockDeviceFeatures features;
        if (_readOnly)
        {
            features = BlockDeviceFeatures.Cache | BlockDeviceFeatures.MultiConn | BlockDeviceFeatures.BlockStatus | BlockDeviceFeatures.ReadOnly;
        }
        else
        {
            features = CacheModeFeatures.Writable(_mode);
            // Punching past the end of file changes nothing, and tells whether fallocate works here at all.
            if (file.TryPunchHole(Size, HostFile.DirectAlignment)) features |= BlockDeviceFeatures.FastZero;
            _cacheMode = options.CreateCacheModeLayer(this);
        }
        Features = features;
        BlockSizes = new BlockSizeHints(1, file.IsDirect ? (uint)HostFile.DirectAlignment : 4096, 32u << 20);
    }

    /// <summary>Opens <paramref name="path"/> as a raw image with the host file the options ask for.</summary>
    public static RawImage Open(string path, ImageOpenOptions options)
    {
        var factory = options.HostFileFactory ?? HostFile.Open;
        var file = LockedHostFile.Open(factory, path, new HostFileOptions(options.ReadOnly, options.CacheMode.UsesODirect()), options.Locking);
        try
        {
            return new RawImage(file, options);
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    public long Size { get; }

    public BlockDeviceFeatures Features { get; }

    public BlockSizeHints BlockSizes { get; }

    /// <summary>The cache mode this image was opened with.</summary>
    public CacheMode CacheMode => _mode;

    /// <summary>The max-dirty-age policy, or null when off or not applicable.</summary>
    public DirtyAgeFlusher? DirtyAgePolicy => _cacheMode?.DirtyAge;

    /// <inheritdoc />
    public UnflushedChanges? UnflushedChanges => _cacheMode?.Unflushed;

    /// <summary>The first failed fdatasync, after which every flush fails until the image is reopened.</summary>
    public SyncFailureLatch SyncFailures => _syncFailures;

    public ValueTask ReadAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        ValueTask reading;
        try
        {
            reading = _file.ReadAsync(offset, buffer);
        }
        catch (IOException e)
        {
            return ValueTask.FromException(HostIoErrors.ToBlockDeviceException(e));
        }
        return reading.IsCompletedSuccessfully ? reading : AwaitHostAsync(reading);
    }

    public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, bool fua, CancellationToken cancellationToken = default)
    {
        ValueTask writing;
        try
        {
            ThrowIfReadOnly();
            writing = _file.WriteAsync(offset, data);
            if (writing.IsCompletedSuccessfully)
            {
                // The threads engine: the write is done; the durability step completes here unless it needs a sync.
                writing.GetAwaiter().GetResult();
                return AfterChange(data.Length, fua);
            }
        }
        catch (IOException e)
        {
            return ValueTask.FromException(HostIoErrors.ToBlockDeviceException(e));
        }
        return WriteThenAfterChangeAsync(writing, data.Length, fua);
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask WriteThenAfterChangeAsync(ValueTask writing, int length, bool fua)
    {
        try
        {
            await writing.ConfigureAwait(false);
            await _cacheMode!.AfterChangeAsync(length, fua).ConfigureAwait(false);
        }
        catch (IOException e)
        {
            throw HostIoErrors.ToBlockDeviceException(e);
        }
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private static async ValueTask AwaitHostAsync(ValueTask pending)
    {
        try
        {
            await pending.ConfigureAwait(false);
        }
        catch (IOException e)
        {
            throw HostIoErrors.ToBlockDeviceException(e);
        }
    }

    public ValueTask ZeroAsync(long offset, long length, ZeroFlags flags, CancellationToken cancellationToken = default)
    {
        try
        {
            ThrowIfReadOnly();
            var done = (flags & ZeroFlags.NoHole) != 0
                ? _file.TryZeroRange(offset, length)
                : _file.TryPunchHole(offset, length) || _file.TryZeroRange(offset, length);
            if (!done)
            {
                if ((flags & ZeroFlags.FastZero) != 0)
                    throw new BlockDeviceException(BlockError.NotSupported, $"{_file.Path}: the file system cannot zero a range quickly");
                WriteZeroes(offset, length);
            }
            return AfterChange(length, (flags & ZeroFlags.Fua) != 0);
        }
        catch (IOException e)
        {
            return ValueTask.FromException(HostIoErrors.ToBlockDeviceException(e));
        }
    }

    public ValueTask TrimAsync(long offset, long length, bool fua, CancellationToken cancellationToken = default)
    {
        try
        {
            ThrowIfReadOnly();
            // A trim is a hint: where holes cannot be punched the data simply stays.
            _file.TryPunchHole(offset, length);
            return AfterChange(length, fua);
        }
        catch (IOException e)
        {
            return ValueTask.FromException(HostIoErrors.ToBlockDeviceException(e));
        }
    }

    public ValueTask FlushAsync(CancellationToken cancellationToken = default)
    {
        if (_cacheMode is null) return ValueTask.CompletedTask;
        try
        {
            return HostStep(_cacheMode.FlushAsync(cancellationToken));
        }
        catch (IOException e)
        {
            return ValueTask.FromException(HostIoErrors.ToBlockDeviceException(e));
        }
    }

    public ValueTask CacheAsync(long offset, long length, CancellationToken cancellationToken = default)
    {
        _file.AdviseWillNeed(offset, length);
        return ValueTask.CompletedTask;
    }

    public ValueTask GetBlockStatusAsync(long offset, long length, List<BlockExtent> extents, CancellationToken cancellationToken = default)
    {
        try
        {
            var position = offset;
            var end = offset + length;
            var first = extents.Count;
            while (position < end)
            {
                var data = _file.SeekData(position);
                long next;
                BlockExtentFlags flags;
                if (data > position)
                {
                    next = Math.Min(data, end);
                    flags = BlockExtentFlags.Hole | BlockExtentFlags.Zero;
                }
                else
                {
                    next = Math.Min(Math.Max(_file.SeekHole(position), position + 1), end);
                    flags = BlockExtentFlags.Data;
                }
                if (!SingleLayerBlockStatus.Append(extents, first, next - position, flags)) break;
                position = next;
            }
            return ValueTask.CompletedTask;
        }
        catch (IOException e)
        {
            return ValueTask.FromException(HostIoErrors.ToBlockDeviceException(e));
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        try
        {
            if (_cacheMode is not null) await _cacheMode.DisposeAsync().ConfigureAwait(false);
            // A clean close leaves everything on disk, whatever the mode.
            if (!_readOnly) _file.Flush();
        }
        finally
        {
            _file.Dispose();
        }
    }

    /// <summary>The cache mode's step after a completed change (see <see cref="CacheModeLayer.AfterChangeAsync"/>); callers map what it throws at once.</summary>
    private ValueTask AfterChange(long length, bool fua) => HostStep(_cacheMode!.AfterChangeAsync(length, fua));

    /// <summary>A host step under way: done (nothing allocated), or its later host errors given as block-device errors.</summary>
    private static ValueTask HostStep(ValueTask running)
    {
        if (!running.IsCompletedSuccessfully) return AwaitHostAsync(running);
        running.GetAwaiter().GetResult();
        return ValueTask.CompletedTask;
    }

    bool ICacheModeTarget.HasUnflushedState => Volatile.Read(ref _neverSynced);

    // The whole flush is the file's asynchronous fdatasync.
    bool ICacheModeTarget.FlushBlocksThread => false;

    IOException? ICacheModeTarget.SyncRefusal() => _syncFailures.RefusalFor(_file.Path);

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    async ValueTask ICacheModeTarget.FlushToDiskAsync()
    {
        await _file.FlushAsync().ConfigureAwait(false);
        Volatile.Write(ref _neverSynced, false);
    }

    // Every write went to the host file already: nothing is held here.
    ValueTask<bool> ICacheModeTarget.FlushToOsAsync(bool orderedFlushFollows, CancellationToken cancellationToken) => ValueTask.FromResult(false);

    private void WriteZeroes(long offset, long length)
    {
        while (length > 0)
        {
            var count = (int)Math.Min(length, ZeroChunk);
            _file.Write(offset, Zeroes.AsSpan(0, count));
            offset += count;
            length -= count;
        }
    }

    private void ThrowIfReadOnly()
    {
        if (_readOnly) throw new BlockDeviceException(BlockError.Permission, $"{_file.Path} is open read-only");
    }
}
