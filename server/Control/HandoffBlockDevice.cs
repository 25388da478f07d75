using System.Runtime.CompilerServices;
using NbdQcow.Cache;
using NbdQcow.HostIo;
using NbdQcow.Image;
using NbdQcow.Image.Qcow2;

namespace NbdQcow.Server.Control;

/// <summary>
/// An export's image that can be handed over to another process and taken back (live migration on shared
/// storage), driven through the control socket.
/// <list type="bullet">
/// <item>Active: the image is open (locked as a writer, or a reader for read-only exports) and requests go to it.</item>
/// <item>Inactive: the image is closed — no metadata cached, no write lock — and only the consistent-read lock byte
/// is kept, as an inactivated qemu keeps it. Connections still negotiate (a migration destination's qemu connects
/// at start-up, before it is activated) with the size and flags the export has when active; FLUSH succeeds (nothing
/// acknowledged is volatile), every other request that needs the image fails with ESHUTDOWN.</item>
/// </list>
/// Inactivating stops new requests, waits for those in flight, flushes in order, closes the image (which marks a
/// qcow2 image clean) and so drops caches and write locks; activating opens the image afresh (locks first, then the
/// header and metadata are read again), so nothing from before the handover is trusted.
/// </summary>
public sealed class HandoffBlockDevice : IBlockDevice, IQemuStatusSource, IUnflushedChangesSource
{
    private const int ActiveState = 0;
    private const int InactiveState = 1;
    private static readonly TimeSpan DrainTimeout = TimeSpan.FromSeconds(60);

    private readonly ImageOpenOptions _options;
    /// <summary>Device and inode of the file served (or probed), so activation never takes another file at the same path.</summary>
    private readonly string? _fileIdentity;
    private readonly SemaphoreSlim _transition = new(1, 1);
    private IBlockDevice? _device;
    private ImageLock? _inactiveLock;
    private volatile int _state;
    private int _inFlight;
    private volatile TaskCompletionSource? _drained;

    private HandoffBlockDevice(string path, ImageOpenOptions options, IBlockDevice? device, ImageLock? inactiveLock,
        long size, BlockDeviceFeatures features, BlockSizeHints blockSizes, string? fileIdentity)
    {
        Path = path;
        _options = options;
        _fileIdentity = fileIdentity;
        _device = device;
        _inactiveLock = inactiveLock;
        _state = device is null ? InactiveState : ActiveState;
        Size = size;
        Features = features;
        BlockSizes = blockSizes;
    }

    /// <summary>Full path of the image.</summary>
    public string Path { get; }

    public bool IsActive => _state == ActiveState;

    public long Size { get; }

    public BlockDeviceFeatures Features { get; }

    public BlockSizeHints BlockSizes { get; }

    /// <summary>Opens the image as usual (with its locks) and serves it.</summary>
    public static HandoffBlockDevice OpenActive(string path, ImageOpenOptions options)
    {
        // The identity later activations compare with: looked at before and after the open, so a file swapped in
        // between cannot become the one every later activation insists on.
        string? identity = HostPath.FileIdentity(path);
        var device = ImageOpener.Open(path, options);
        if (HostPath.FileIdentity(path) != identity)
        {
            device.DisposeAsync().AsTask().GetAwaiter().GetResult();
            throw new IOException($"{System.IO.Path.GetFullPath(path)}: the image file was replaced while it was being opened; try again");
        }
        return new HandoffBlockDevice(System.IO.Path.GetFullPath(path), options, device, null, device.Size, device.Features, device.BlockSizes,
            identity);
    }

    /// <summary>
    /// Starts inactive (a migration destination): reads the image once, read-only and without locks, to learn its size,
    /// then closes it; holds only the consistent-read lock byte. The flags advertised are those the image will have when
    /// activated; activation refuses an image that would offer less.
    /// </summary>
    public static HandoffBlockDevice OpenInactive(string path, ImageOpenOptions options)
    {
        var fullPath = System.IO.Path.GetFullPath(path);
        var probeOptions = options with { ReadOnly = true, Locking = ImageLocking.Off, Journal = false, MaxDirtyAge = null };
        long size;
        BlockDeviceFeatures features;
        BlockSizeHints blockSizes;
        var format = options.Format is { } name ? ImageFormats.Get(name) : ImageFormats.Probe(fullPath);
        string? identity = HostPath.FileIdentity(fullPath);
        var probe = ImageOpener.Open(fullPath, probeOptions with { Format = format.Name });
        try
        {
            size = probe.Size;
            blockSizes = probe.BlockSizes;
            features = options.ReadOnly || options.Snapshot is not null || !format.Has(ImageFormatFeatures.Writable) ? probe.Features : WritableFeatures(format, options.CacheMode);
        }
        finally
        {
            probe.DisposeAsync().AsTask().GetAwaiter().GetResult();
        }
        var inactiveLock = options.Locking == ImageLocking.Off ? null : ImageLock.Acquire(fullPath, ImageLockSet.SharedReader);
        return new HandoffBlockDevice(fullPath, options, null, inactiveLock, size, features, blockSizes, identity);
    }

    /// <summary>What a read-write open of the image offers (FAST_ZERO only where the format always has it, whatever the file system).</summary>
    private static BlockDeviceFeatures WritableFeatures(ImageFormat format, CacheMode mode)
    {
        var features = CacheModeFeatures.Writable(mode);
        if (format.Has(ImageFormatFeatures.AlwaysFastZero)) features |= BlockDeviceFeatures.FastZero;
        return features;
    }

    /// <summary>
    /// Hands the image over: new requests fail, requests in flight finish (bounded), then an ordered flush and close.
    /// Returns false with a reason when already inactive.
    /// </summary>
    public async Task<(bool Changed, string Message)> InactivateAsync()
    {
        await _transition.WaitAsync().ConfigureAwait(false);
        try
        {
            if (_state == InactiveState) return (false, "already inactive");
            var drained = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            _drained = drained;
            _state = InactiveState;
            if (Volatile.Read(ref _inFlight) != 0)
            {
                try
                {
                    await drained.Task.WaitAsync(DrainTimeout).ConfigureAwait(false);
                }
                catch (TimeoutException)
                {
                    _state = ActiveState;
                    throw new IOException($"{Path}: requests still in flight after {DrainTimeout.TotalSeconds:F0} s; the image stays active");
                }
            }
            // The consistent-read byte stays locked while inactive, as qemu keeps it; taken before the write locks go.
            var inactiveLock = _options.Locking == ImageLocking.Off ? null : ImageLock.Acquire(Path, ImageLockSet.SharedReader);
            var device = _device!;
            _device = null;
            _inactiveLock = inactiveLock;
            try
            {
                await device.FlushAsync().ConfigureAwait(false);
            }
            finally
            {
                // Closing flushes in order again, marks a qcow2 image clean and releases the write locks.
                await device.DisposeAsync().ConfigureAwait(false);
            }
            return (true, "inactive: flushed, closed, write lock released");
        }
        finally
        {
            _transition.Release();
        }
    }

    /// <summary>
    /// Takes the image back: opens it afresh with its locks (refused while another writer holds it) and serves it.
    /// Returns false with a reason when already active.
    /// </summary>
    public async Task<(bool Changed, string Message)> ActivateAsync()
    {
        await _transition.WaitAsync().ConfigureAwait(false);
        try
        {
            if (_state == ActiveState) return (false, "already active");
            // The same file as before (as an inactivated qemu keeps its descriptor), not another one renamed or
            // retargeted (symlink) over the path meanwhile: looked at before and after the open, so a swap
            // between the look and the open is caught too.
            string? replaced = ReplacedFileProblem();
            if (replaced is not null) throw new IOException(replaced);
            var device = await Task.Run(() => ImageOpener.Open(Path, _options)).ConfigureAwait(false);
            var missing = Features & ~device.Features;
            replaced = ReplacedFileProblem();
            if (replaced is not null || device.Size != Size || missing != BlockDeviceFeatures.None)
            {
                await device.DisposeAsync().ConfigureAwait(false);
                throw new IOException(replaced is not null ? replaced : device.Size != Size
                    ? $"{Path}: the image is now {device.Size} bytes, but its export was announced with {Size}; it stays inactive"
                    : $"{Path}: the image no longer offers {missing}, which its export announced; it stays inactive");
            }
            _device = device;
            _state = ActiveState;
            _inactiveLock?.Dispose();
            _inactiveLock = null;
            return (true, "active: image reopened and locked");
        }
        finally
        {
            _transition.Release();
        }
    }

    private string? ReplacedFileProblem()
    {
        if (_fileIdentity is null) return null;
        string? now = HostPath.FileIdentity(Path);
        return now == _fileIdentity ? null
            : $"{Path}: the image file was replaced while the export was inactive (device:inode {_fileIdentity}, now {now ?? "missing"}); " +
              "it stays inactive: put the file it served back at this path, or restart the server to serve the new one";
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public async ValueTask ReadAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        var device = Enter();
        try { await device.ReadAsync(offset, buffer, cancellationToken).ConfigureAwait(false); }
        finally { Exit(); }
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public async ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, bool fua, CancellationToken cancellationToken = default)
    {
        var device = Enter();
        try { await device.WriteAsync(offset, data, fua, cancellationToken).ConfigureAwait(false); }
        finally { Exit(); }
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public async ValueTask ZeroAsync(long offset, long length, ZeroFlags flags, CancellationToken cancellationToken = default)
    {
        var device = Enter();
        try { await device.ZeroAsync(offset, length, flags, cancellationToken).ConfigureAwait(false); }
        finally { Exit(); }
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public async ValueTask TrimAsync(long offset, long length, bool fua, CancellationToken cancellationToken = default)
    {
        var device = Enter();
        try { await device.TrimAsync(offset, length, fua, cancellationToken).ConfigureAwait(false); }
        finally { Exit(); }
    }

    /// <summary>While inactive there is nothing volatile: everything acknowledged was flushed when the image was handed over.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public async ValueTask FlushAsync(CancellationToken cancellationToken = default)
    {
        if (!TryEnter(out var device)) return;
        try { await device.FlushAsync(cancellationToken).ConfigureAwait(false); }
        finally { Exit(); }
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public async ValueTask CacheAsync(long offset, long length, CancellationToken cancellationToken = default)
    {
        var device = Enter();
        try { await device.CacheAsync(offset, length, cancellationToken).ConfigureAwait(false); }
        finally { Exit(); }
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public async ValueTask GetBlockStatusAsync(long offset, long length, List<BlockExtent> extents, CancellationToken cancellationToken = default)
    {
        var device = Enter();
        try { await device.GetBlockStatusAsync(offset, length, extents, cancellationToken).ConfigureAwait(false); }
        finally { Exit(); }
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public async ValueTask GetAllocationDepthAsync(long offset, long length, List<StatusExtent> extents, CancellationToken cancellationToken = default)
    {
        var device = Enter();
        try { await QemuStatus(device).GetAllocationDepthAsync(offset, length, extents, cancellationToken).ConfigureAwait(false); }
        finally { Exit(); }
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public async ValueTask GetDirtyBitmapStatusAsync(string bitmap, long offset, long length, List<StatusExtent> extents, CancellationToken cancellationToken = default)
    {
        var device = Enter();
        try { await QemuStatus(device).GetDirtyBitmapStatusAsync(bitmap, offset, length, extents, cancellationToken).ConfigureAwait(false); }
        finally { Exit(); }
    }

    /// <summary>Checked against the open image; while inactive nothing can be said until activation (requests fail then anyway).</summary>
    public string? CheckBitmapExportable(string bitmap)
    {
        if (!TryEnter(out var device)) return null;
        try { return device is IQemuStatusSource source ? source.CheckBitmapExportable(bitmap) : "the image format has no persistent bitmaps"; }
        finally { Exit(); }
    }

    /// <summary>The open image's; null while inactive (a handed-over image holds nothing unflushed here).</summary>
    public UnflushedChanges? UnflushedChanges => Volatile.Read(ref _device) is IUnflushedChangesSource source ? source.UnflushedChanges : null;

    private IQemuStatusSource QemuStatus(IBlockDevice device) => device as IQemuStatusSource
        ?? throw new BlockDeviceException(BlockError.NotSupported, $"{Path}: the image format has no qemu block status");

    public async ValueTask DisposeAsync()
    {
        await _transition.WaitAsync().ConfigureAwait(false);
        try
        {
            var device = _device;
            _device = null;
            _state = InactiveState;
            if (device is not null) await device.DisposeAsync().ConfigureAwait(false);
            _inactiveLock?.Dispose();
            _inactiveLock = null;
        }
        finally
        {
            _transition.Release();
        }
    }

    private IBlockDevice Enter() =>
        TryEnter(out var device)
            ? device
            : throw new BlockDeviceException(BlockError.Shutdown,
                $"{Path} is inactive (handed over to another process); activate it through the control socket first");

    /// <summary>Counts the request in before looking at the state, so an inactivation waits for every request that got in.</summary>
    private bool TryEnter(out IBlockDevice device)
    {
        Interlocked.Increment(ref _inFlight);
        if (_state == ActiveState && _device is { } current)
        {
            device = current;
            return true;
        }
        Exit();
        device = null!;
        return false;
    }

    private void Exit()
    {
        if (Interlocked.Decrement(ref _inFlight) == 0 && _state != ActiveState) _drained?.TrySetResult();
    }
}
