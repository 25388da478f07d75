using System.Numerics;
using System.Runtime.CompilerServices;

namespace NbdQcow.Server.Nbd;

/// <summary>
/// Buffers for request and reply payloads: pinned arrays (on the pinned object heap, so their address never moves)
/// whose usable part starts on a page boundary, in free lists of power-of-two sizes from one page to the largest
/// request. At most <c>retainLimit</c> bytes are kept free. <see cref="Trim"/> drops the free lists and, when large
/// buffers were made since the last one, asks the runtime to give the memory back to the OS.
/// </summary>
public sealed class PayloadBufferPool
{
    /// <summary>Alignment of every buffer's start: O_DIRECT needs the memory aligned to the logical block (4 KiB covers all).</summary>
    public const int Alignment = 4096;

    /// <summary>Buffers up to this size do not, on their own, make <see cref="Trim"/> run a full collection.</summary>
    public const int SmallLimit = 64 * 1024;

    private const int LargestShift = 25; // 32 MiB, the largest request
    private const int SmallestShift = 12; // one page

    private readonly Stack<byte[]>[] _free;
    private readonly long _retainLimit;
    private long _retained;
    private bool _allocatedLargeSinceTrim;

    public PayloadBufferPool(long retainLimit)
    {
        _retainLimit = retainLimit;
        _free = new Stack<byte[]>[LargestShift - SmallestShift + 1];
        for (var i = 0; i < _free.Length; i++)
        {
            _free[i] = new Stack<byte[]>(8);
        }
    }

    /// <summary>Bytes held in the free lists (usable sizes, without the alignment slack).</summary>
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

    /// <summary>The size the budget charges for <paramref name="length"/> bytes: the power of two that holds them.</summary>
    public static int BufferSizeFor(int length) =>
        length <= SmallLimit ? (int)BitOperations.RoundUpToPowerOf2((uint)Math.Max(length, 16)) : (int)BitOperations.RoundUpToPowerOf2((uint)length);

    /// <summary>The usable size of the buffer <see cref="Rent"/> returns for <paramref name="length"/> bytes.</summary>
    public static int CapacityFor(int length) => Math.Max(BufferSizeFor(length), 1 << SmallestShift);

    public PayloadBuffer Rent(int length)
    {
        var capacity = CapacityFor(length);
        var stack = _free[BitOperations.Log2((uint)capacity) - SmallestShift];
        lock (_free)
        {
            if (stack.TryPop(out var pooled))
            {
                _retained -= capacity;
                return Wrap(pooled, capacity);
            }
            if (capacity > SmallLimit)
            {
                _allocatedLargeSinceTrim = true;
            }
        }
        // Pinned, so the aligned start found now stays aligned for the array's life.
        return Wrap(GC.AllocateUninitializedArray<byte>(capacity + Alignment, pinned: true), capacity);
    }

    public void Return(PayloadBuffer buffer)
    {
        if (buffer.IsEmpty || !BitOperations.IsPow2(buffer.Capacity) || buffer.Capacity > 1 << LargestShift
            || buffer.Capacity < 1 << SmallestShift || buffer.Array.Length != buffer.Capacity + Alignment)
        {
            return;
        }
        lock (_free)
        {
            if (_retained + buffer.Capacity <= _retainLimit)
            {
                _free[BitOperations.Log2((uint)buffer.Capacity) - SmallestShift].Push(buffer.Array);
                _retained += buffer.Capacity;
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
            foreach (var stack in _free)
            {
                stack.Clear();
            }
            _retained = 0;
            if (!_allocatedLargeSinceTrim)
            {
                return false;
            }
            _allocatedLargeSinceTrim = false;
        }
        GC.Collect(GC.MaxGeneration, GCCollectionMode.Aggressive, blocking: true, compacting: true);
        return true;
    }

    private static unsafe PayloadBuffer Wrap(byte[] array, int capacity)
    {
        var address = (nint)Unsafe.AsPointer(ref array[0]);
        var start = (int)((Alignment - address % Alignment) % Alignment);
        return new PayloadBuffer(array, start, capacity);
    }
}
