namespace NbdQcow.Image.Qcow2;

/// <summary>How the guest bytes of an image (this layer only, not its backing chain) are stored.</summary>
public sealed record Qcow2AllocationSummary
{
    /// <summary>Bytes mapped to data clusters.</summary>
    public long DataBytes { get; init; }
    /// <summary>Bytes stored in compressed clusters.</summary>
    public long CompressedBytes { get; init; }
    /// <summary>Bytes that read as zero through the zero flag (with or without a preallocated host cluster).</summary>
    public long ZeroBytes { get; init; }
    /// <summary>Bytes not allocated in this layer (read from the backing file, or zero).</summary>
    public long UnallocatedBytes { get; init; }
    /// <summary>Bytes whose mapping is damaged (an L2 table past the end of the file, a bad entry): they fail with EIO.</summary>
    public long DamagedBytes { get; init; }
    /// <summary>L2 tables referenced by the L1 table.</summary>
    public long L2Tables { get; init; }
}
