namespace NbdQcow.Image.Qcow2.Format;

/// <summary>
/// One L1 table entry: bits 9-55 the L2 table's host offset (0 = no L2 table), bit 63 COPIED
/// (refcount exactly 1, may be written in place). Other bits are reserved and must be zero.
/// </summary>
public readonly record struct L1Entry(ulong Raw)
{
    public const ulong OffsetMask = 0x00ff_ffff_ffff_fe00UL;
    public const ulong CopiedFlag = 1UL << 63;
    public const ulong ReservedMask = 0x7f00_0000_0000_01ffUL;

    public long L2TableOffset => (long)(Raw & OffsetMask);
    public bool IsCopied => (Raw & CopiedFlag) != 0;
    public bool IsAllocated => L2TableOffset != 0;
    public ulong ReservedBits => Raw & ReservedMask;

    public static L1Entry Create(long l2TableOffset, bool copied) =>
        new(((ulong)l2TableOffset & OffsetMask) | (copied ? CopiedFlag : 0));
}
