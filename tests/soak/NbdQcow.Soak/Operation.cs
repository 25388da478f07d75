namespace NbdQcow.Soak;

/// <summary>One write, zero or trim over a run of blocks; <see cref="AckSequence"/> is 0 until the server acknowledged it.</summary>
public sealed class Operation(OperationKind kind, long tag, int firstBlock, int blockCount)
{
    public OperationKind Kind { get; } = kind;
    public long Tag { get; } = tag;
    public int FirstBlock { get; } = firstBlock;
    public int BlockCount { get; } = blockCount;
    public long AckSequence { get; set; }
}
