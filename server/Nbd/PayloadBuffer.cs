namespace NbdQcow.Server.Nbd;

/// <summary>
/// A payload buffer rented from <see cref="PayloadBufferPool"/>: a pinned array and where its page-aligned part
/// starts. Aligned memory lets an O_DIRECT read or write use it as it is, without a bounce copy.
/// </summary>
public readonly struct PayloadBuffer
{
    internal PayloadBuffer(byte[] array, int start, int capacity)
    {
        Array = array;
        Start = start;
        Capacity = capacity;
    }

    /// <summary>The pinned array behind the buffer (longer than <see cref="Capacity"/>: the alignment slack).</summary>
    public byte[] Array { get; }

    /// <summary>Where the aligned part starts in <see cref="Array"/>.</summary>
    public int Start { get; }

    /// <summary>Usable bytes from <see cref="Start"/> (a power of two, at least one page).</summary>
    public int Capacity { get; }

    public bool IsEmpty => Array is null;

    public Memory<byte> Memory(int length) => Array.AsMemory(Start, length);

    public Span<byte> Span(int length) => Array.AsSpan(Start, length);
}
