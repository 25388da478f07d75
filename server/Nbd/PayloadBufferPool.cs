using System.Buffers;
using System.Numerics;

namespace NbdQcow.Server.Nbd;

/// <summary>
/// Buffers for request and reply payloads. Small ones come from <see cref="ArrayPool{T}.Shared"/>; large ones
/// (over <see cref="SmallLimit"/>) from free lists of power-of-two sizes kept here, at most
/// <c>retainLimit</c> bytes of them, because the shared pool keeps up to dozens of 32 MiB arrays per core for
/// good. <see cref="Trim"/> drops the free lists and asks the runtime to give the memory back to the OS.
/// </summary>
public sealed class PayloadBufferPool
{
    /// <summary>Buffers up to this size come from the shared pool (its per-size caches stay small).</summary>
    public const int SmallLimit = 64 * 1024;

    private const int LargestShift = 25; // 32 MiB, the largest request
    private const int SmallestLargeShift = 17; // 128 KiB: the first size above SmallLimit

    private readonly Stack<byte[]>[] _free;
    private readonly long _retainLimit;
    private long _retained;
    private bool _allocatedSinceTrim;

    public PayloadBufferPool(long retainLimit)
    {
        _retainLimit = retainLimit;
        _free = new Stack<byte[]>[LargestShift - SmallestLargeShift + 1];
        for (var i = 0; i < _free.Length; i++)
        {
            _free[i] = new Stack<byte[]>(8);
        }
    }

    /// <summary>Bytes held in the free lists.</summary>
    public long Retained
    {
        get
        {
            lock (_free)
            {
                return _retained;
            }
        }
    }

    /// <summary>The length of the buffer <see cref="Rent"/> returns for <paramref name="length"/> bytes.</summary>
    public static int BufferSizeFor(int length) =>
        length <= SmallLimit ? (int)BitOperations.RoundUpToPowerOf2((uint)Math.Max(length, 16)) : (int)BitOperations.RoundUpToPowerOf2((uint)length);

    public byte[] Rent(int length)
    {
        if (length <= SmallLimit)
        {
            return ArrayPool<byte>.Shared.Rent(length);
        }
        var size = BufferSizeFor(length);
        var stack = _free[BitOperations.Log2((uint)size) - SmallestLargeShift];
        lock (_free)
        {
            if (stack.TryPop(out var buffer))
            {
                _retained -= buffer.Length;
                return buffer;
            }
            _allocatedSinceTrim = true;
        }
        return GC.AllocateUninitializedArray<byte>(size);
    }

    public void Return(byte[] buffer)
    {
        if (buffer.Length <= SmallLimit)
        {
            ArrayPool<byte>.Shared.Return(buffer);
            return;
        }
        if (!BitOperations.IsPow2(buffer.Length) || buffer.Length > 1 << LargestShift)
        {
            return;
        }
        lock (_free)
        {
            if (_retained + buffer.Length <= _retainLimit)
            {
                _free[BitOperations.Log2((uint)buffer.Length) - SmallestLargeShift].Push(buffer);
                _retained += buffer.Length;
            }
        }
    }

    /// <summary>
    /// Drops the free lists and, when large buffers were made since the last trim, runs an aggressive full
    /// collection so the runtime decommits the memory they used. Call only when nothing is held.
    /// </summary>
    /// <returns>True when a collection ran.</returns>
    public bool Trim()
    {
        lock (_free)
        {
            if (!_allocatedSinceTrim)
            {
                return false;
            }
            foreach (var stack in _free)
            {
                stack.Clear();
            }
            _retained = 0;
            _allocatedSinceTrim = false;
        }
        GC.Collect(GC.MaxGeneration, GCCollectionMode.Aggressive, blocking: true, compacting: true);
        return true;
    }
}
