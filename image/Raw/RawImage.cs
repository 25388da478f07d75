using System.Runtime.CompilerServices;
using NbdQcow.Cache;
using NbdQcow.HostIo;

namespace NbdQcow.Image.Raw;

/// <summary>
/// A raw image: the host file is the disk. Cache modes (ARCHITECTURE.md): writethrough/directsync make each
/// change durable (fdatasync) before it completes; FUA does that for one request; FLUSH is fdatasync in
/// writeback/none, a no-op in writethrough/directsync and acknowledged at once in unsafe. With max dirty
/// age on (writeback/none/unsafe) a background flush bounds how long a change stays volatile.
/// The host file is synchronous, so every method completes before it returns.
/// </summary>
public sealed partial class RawImage : IBlockDevice, IUnflushedChangesSource
{
    private const int ZeroChunk = 1 << 20;
    private static readonly byte[] Zeroes = new byte[ZeroChunk];

    private readonly IHostFile _file;
    private readonly SyncFailureLatch _syncFailures = new();
    private readonly CacheMode _mode;
    private readonly DirtyAgeFlusher? _dirtyAge;
    private readonly UnflushedChanges? _unflushed;
    private readonly bool _readOnly;
    private int _disposed;

    public RawImage(IHostFile file, ImageOpenOptions options)
    {
        // After a failed fdatasync no later flush may succeed (the kernel may have dropped what it covered).
        _file = file.IsReadOnly ? file : new SyncLatchedHostFile(file, _syncFailures);
        _mode = options.CacheMode;
        _readOnly = options.ReadOnly || file.IsReadOnly;
        Size = file.Length;
        var features = BlockDeviceFeatures.Cache | BlockDeviceFeatures.MultiConn | BlockDeviceFeatures.BlockStatus;
        if (_readOnly)
        {
            features |= BlockDeviceFeatures.ReadOnly;
        }
        else
        {
            features |= BlockDeviceFeatures.Trim | BlockDeviceFeatures.Zero;
            // FLUSH/FUA are advertised in every mode, as qemu-nbd does: clients that flush regardless (libnbd
            // refuses to send a FLUSH the server did not advertise) must work; in writethrough and directsync
            // they are no-ops, every write being durable when acknowledged.
            features |= BlockDeviceFeatures.Flush | BlockDeviceFeatures.Fua;
            if (!_mode.HasVolatileCache()) features |= BlockDeviceFeatures.WriteThrough;
            // Punching past the end of file changes nothing, and tells whether fallocate works here at all.
            if (file.TryPunchHole(Size, HostFile.DirectAlignment)) features |= BlockDeviceFeatures.FastZero;
            if (_mode.HasVolatileCache() && options.MaxDirtyAge is { } maxAge)
                _dirtyAge = new DirtyAgeFlusher(maxAge, FlushToDiskAsync, options.TimeProvider, options.BackgroundError);
            _unflushed = new UnflushedChanges { FlushCompleted = options.FlushCompleted };
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
    public DirtyAgeFlusher? DirtyAgePolicy => _dirtyAge;

    /// <inheritdoc />
    public UnflushedChanges? UnflushedChanges => _unflushed;

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
                // The threads engine: the write is done; the durability step runs here unless it needs a sync.
                writing.GetAwaiter().GetResult();
                if (!_mode.IsWriteThrough() && !(fua && _mode.HonoursFlush()))
                {
                    AfterChange(data.Length, fua);
                    return ValueTask.CompletedTask;
                }
                writing = ValueTask.CompletedTask;
            }
        }
        catch (IOException e)
        {
            return ValueTask.FromException(HostIoErrors.ToBlockDeviceException(e));
        }
        return WriteThenSyncAsync(writing, data.Length, fua);
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask WriteThenSyncAsync(ValueTask writing, int length, bool fua)
    {
        try
        {
            await writing.ConfigureAwait(false);
            await AfterChangeAsync(length, fua).ConfigureAwait(false);
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
            AfterChange(length, (flags & ZeroFlags.Fua) != 0);
            return ValueTask.CompletedTask;
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
            AfterChange(length, fua);
            return ValueTask.CompletedTask;
        }
        catch (IOException e)
        {
            return ValueTask.FromException(HostIoErrors.ToBlockDeviceException(e));
        }
    }

    public ValueTask FlushAsync(CancellationToken cancellationToken = default)
    {
        // writethrough/directsync: everything is durable already; unsafe: acknowledged at once, never synced on request.
        // After a failed fdatasync no flush is acknowledged again (unsafe promises nothing, so it keeps acknowledging).
        if (_readOnly) return ValueTask.CompletedTask;
        if (_mode != CacheMode.Unsafe && _syncFailures.RefusalFor(_file.Path) is { } refusal)
            return ValueTask.FromException(HostIoErrors.ToBlockDeviceException(refusal));
        if (!_mode.HonoursFlush()) return ValueTask.CompletedTask;
        return FlushToDiskAsync();
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
            if (_dirtyAge is not null) await _dirtyAge.DisposeAsync().ConfigureAwait(false);
            // A clean close leaves everything on disk, whatever the mode.
            if (!_readOnly) _file.Flush();
        }
        finally
        {
            _file.Dispose();
        }
    }

    /// <summary><see cref="AfterChange"/> for the data path: the sync (if any) is the engine's asynchronous barrier.</summary>
    private async ValueTask AfterChangeAsync(long length, bool fua)
    {
        if (_mode.IsWriteThrough())
        {
            await _file.FlushAsync().ConfigureAwait(false);
            return;
        }
        _unflushed?.NoteChangeCompleted(length);
        _dirtyAge?.NoteChangeCompleted();
        if (fua && _mode.HonoursFlush())
        {
            var ticket = _dirtyAge?.BeginFlush();
            var unflushed = _unflushed?.BeginFlush();
            await _file.FlushAsync().ConfigureAwait(false);
            EndFlush(ticket, unflushed);
        }
    }

    private void EndFlush(FlushTicket? ticket, UnflushedChanges.FlushTicket? unflushed)
    {
        if (ticket is { } t) _dirtyAge!.EndFlush(t);
        if (unflushed is { } u) _unflushed!.EndFlush(u);
    }

    /// <summary>Durability after a completed change, per mode: sync now (writethrough, directsync, FUA) or note it dirty.</summary>
    private void AfterChange(long length, bool fua)
    {
        if (_mode.IsWriteThrough())
        {
            _file.Flush();
            return;
        }
        _unflushed?.NoteChangeCompleted(length);
        _dirtyAge?.NoteChangeCompleted();
        if (fua && _mode.HonoursFlush()) FlushToDisk();
    }

    private ValueTask FlushToDiskAsync()
    {
        try
        {
            var ticket = _dirtyAge?.BeginFlush();
            var unflushed = _unflushed?.BeginFlush();
            var flushing = _file.FlushAsync();
            if (!flushing.IsCompletedSuccessfully) return EndFlushAsync(flushing, ticket, unflushed);
            flushing.GetAwaiter().GetResult();
            EndFlush(ticket, unflushed);
            return ValueTask.CompletedTask;
        }
        catch (IOException e)
        {
            return ValueTask.FromException(HostIoErrors.ToBlockDeviceException(e));
        }
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask EndFlushAsync(ValueTask flushing, FlushTicket? ticket, UnflushedChanges.FlushTicket? unflushed)
    {
        try
        {
            await flushing.ConfigureAwait(false);
            EndFlush(ticket, unflushed);
        }
        catch (IOException e)
        {
            throw HostIoErrors.ToBlockDeviceException(e);
        }
    }

    private void FlushToDisk()
    {
        var ticket = _dirtyAge?.BeginFlush();
        var unflushed = _unflushed?.BeginFlush();
        _file.Flush();
        if (ticket is { } t) _dirtyAge!.EndFlush(t);
        if (unflushed is { } u) _unflushed!.EndFlush(u);
    }

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
