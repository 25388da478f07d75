using System.Runtime.InteropServices;

namespace NbdQcow.HostIo;

/// <summary>
/// A pool of equally sized native buffers aligned for O_DIRECT. Renting and returning allocates nothing
/// once the pool is warm; at most <c>maxPooled</c> buffers are kept, extra ones are freed on return.
/// </summary>
public sealed unsafe class AlignedBufferPool : IDisposable
{
    private readonly Stack<nint> _free;
    private readonly int _maxPooled;
    private bool _disposed;

    public AlignedBufferPool(int bufferSize, int alignment, int maxPooled = 16)
    {
        if (alignment <= 0 || (alignment & (alignment - 1)) != 0) throw new ArgumentOutOfRangeException(nameof(alignment), "must be a power of two");
        if (bufferSize <= 0 || bufferSize % alignment != 0) throw new ArgumentOutOfRangeException(nameof(bufferSize), "must be a positive multiple of the alignment");
        BufferSize = bufferSize;
        Alignment = alignment;
        _maxPooled = maxPooled;
        _free = new Stack<nint>(maxPooled);
    }

    public int BufferSize { get; }

    public int Alignment { get; }

    /// <summary>Rents a buffer of <see cref="BufferSize"/> bytes; return it with <see cref="Return"/>.</summary>
    public nint Rent()
    {
        lock (_free)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_free.TryPop(out var pointer)) return pointer;
        }
        return (nint)NativeMemory.AlignedAlloc((nuint)BufferSize, (nuint)Alignment);
    }

    public void Return(nint buffer)
    {
        lock (_free)
        {
            if (!_disposed && _free.Count < _maxPooled)
            {
                _free.Push(buffer);
                return;
            }
        }
        NativeMemory.AlignedFree((void*)buffer);
    }

    public Span<byte> AsSpan(nint buffer, int length) => new((void*)buffer, length);

    public void Dispose()
    {
        lock (_free)
        {
            _disposed = true;
            while (_free.TryPop(out var pointer)) NativeMemory.AlignedFree((void*)pointer);
        }
    }
}
