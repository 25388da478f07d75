using NbdQcow.Image;

namespace NbdQcow.Tests.Unit.Server;

/// <summary>
/// In-memory block device for server tests: real data, allocation tracked per 4 KiB block (so block status,
/// trim and zero have observable effects), counters for flush/FUA/cache, optional per-read delays (to force
/// out-of-order replies) and injected errors.
/// </summary>
public sealed class MemoryBlockDevice : IBlockDevice
{
    public const int BlockSize = 4096;

    private readonly byte[] _data;
    private readonly bool[] _allocated;
    private readonly object _lock = new();
    private int _flushes;
    private int _fuaWrites;
    private int _caches;

    public MemoryBlockDevice(long size, BlockDeviceFeatures? features = null)
    {
        Size = size;
        _data = new byte[size];
        _allocated = new bool[(size + BlockSize - 1) / BlockSize];
        Features = features ?? (BlockDeviceFeatures.Flush | BlockDeviceFeatures.Fua | BlockDeviceFeatures.Trim | BlockDeviceFeatures.Zero
            | BlockDeviceFeatures.FastZero | BlockDeviceFeatures.Cache | BlockDeviceFeatures.MultiConn | BlockDeviceFeatures.BlockStatus);
    }

    public long Size { get; }

    public BlockDeviceFeatures Features { get; }

    public BlockSizeHints BlockSizes => new(1, BlockSize, 32 * 1024 * 1024);

    /// <summary>Delay before a read at a given offset completes; null = none.</summary>
    public Func<long, TimeSpan>? ReadDelay { get; set; }

    /// <summary>Delay before each write completes; null = none.</summary>
    public TimeSpan? WriteDelay { get; set; }

    /// <summary>Throws this error for any operation touching [offset, offset+length).</summary>
    public (long Offset, long Length, BlockError Error)? Fault { get; set; }

    public int Flushes => Volatile.Read(ref _flushes);

    public int FuaWrites => Volatile.Read(ref _fuaWrites);

    public int Caches => Volatile.Read(ref _caches);

    public bool Disposed { get; private set; }

    /// <summary>Flush count when the device was disposed.</summary>
    public int FlushesAtDispose { get; private set; } = -1;

    public ReadOnlySpan<byte> Data => _data;

    public async ValueTask ReadAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        CheckFault(offset, buffer.Length);
        if (ReadDelay?.Invoke(offset) is { } delay && delay > TimeSpan.Zero)
        {
            await Task.Delay(delay, cancellationToken);
        }
        _data.AsSpan((int)offset, buffer.Length).CopyTo(buffer.Span);
    }

    public async ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, bool fua, CancellationToken cancellationToken = default)
    {
        CheckFault(offset, data.Length);
        if (WriteDelay is { } delay)
        {
            await Task.Delay(delay, cancellationToken);
        }
        data.Span.CopyTo(_data.AsSpan((int)offset));
        SetAllocated(offset, data.Length, true, wholeBlocksOnly: false);
        if (fua)
        {
            Interlocked.Increment(ref _fuaWrites);
        }
    }

    public ValueTask ZeroAsync(long offset, long length, ZeroFlags flags, CancellationToken cancellationToken = default)
    {
        CheckFault(offset, length);
        _data.AsSpan((int)offset, (int)length).Clear();
        if ((flags & ZeroFlags.NoHole) == 0)
        {
            SetAllocated(offset, length, false, wholeBlocksOnly: true);
        }
        else
        {
            SetAllocated(offset, length, true, wholeBlocksOnly: false);
        }
        return ValueTask.CompletedTask;
    }

    public ValueTask TrimAsync(long offset, long length, bool fua, CancellationToken cancellationToken = default)
    {
        CheckFault(offset, length);
        // Like a punched hole: whole blocks inside the range read as zero afterwards.
        var first = (offset + BlockSize - 1) / BlockSize;
        var end = (offset + length) / BlockSize;
        if (end > first)
        {
            _data.AsSpan((int)(first * BlockSize), (int)((end - first) * BlockSize)).Clear();
        }
        SetAllocated(offset, length, false, wholeBlocksOnly: true);
        return ValueTask.CompletedTask;
    }

    public ValueTask FlushAsync(CancellationToken cancellationToken = default)
    {
        Interlocked.Increment(ref _flushes);
        return ValueTask.CompletedTask;
    }

    public ValueTask CacheAsync(long offset, long length, CancellationToken cancellationToken = default)
    {
        Interlocked.Increment(ref _caches);
        return ValueTask.CompletedTask;
    }

    public ValueTask GetBlockStatusAsync(long offset, long length, List<BlockExtent> extents, CancellationToken cancellationToken = default)
    {
        lock (_lock)
        {
            var at = offset;
            var end = offset + length;
            while (at < end)
            {
                var allocated = _allocated[at / BlockSize];
                var runEnd = (at / BlockSize + 1) * BlockSize;
                while (runEnd < end && _allocated[runEnd / BlockSize] == allocated)
                {
                    runEnd += BlockSize;
                }
                runEnd = Math.Min(runEnd, end);
                extents.Add(new BlockExtent(runEnd - at, allocated ? BlockExtentFlags.Data : BlockExtentFlags.Hole | BlockExtentFlags.Zero));
                at = runEnd;
            }
        }
        return ValueTask.CompletedTask;
    }

    public ValueTask DisposeAsync()
    {
        Disposed = true;
        FlushesAtDispose = Flushes;
        return ValueTask.CompletedTask;
    }

    private void CheckFault(long offset, long length)
    {
        if (Fault is { } fault && offset < fault.Offset + fault.Length && fault.Offset < offset + length)
        {
            throw new BlockDeviceException(fault.Error, $"injected {fault.Error} at {fault.Offset}");
        }
    }

    private void SetAllocated(long offset, long length, bool value, bool wholeBlocksOnly)
    {
        if (length == 0)
        {
            return;
        }
        long first, end;
        if (wholeBlocksOnly)
        {
            first = (offset + BlockSize - 1) / BlockSize;
            end = (offset + length) / BlockSize;
        }
        else
        {
            first = offset / BlockSize;
            end = (offset + length + BlockSize - 1) / BlockSize;
        }
        lock (_lock)
        {
            for (var i = first; i < end; i++)
            {
                _allocated[i] = value;
            }
        }
    }
}
