namespace NbdQcow.Image.Qcow2.Recover;

/// <summary>
/// One view of the guest disk (the active image or a snapshot): for every L1 slot the host offset of its L2 table,
/// or 0 when the slot is empty or its entry was refused as damaged.
/// </summary>
internal sealed class L1View
{
    public L1View(string name, long l1Offset, long[] l2Offsets, bool[] damaged, DateTimeOffset? date, bool[]? pastEnd = null)
    {
        PastEnd = pastEnd ?? new bool[l2Offsets.Length];
        Name = name;
        L1Offset = l1Offset;
        L2Offsets = l2Offsets;
        Damaged = damaged;
        Date = date;
    }

    public string Name { get; }
    public long L1Offset { get; }
    /// <summary>Per slot: the L2 table's host offset, 0 = none.</summary>
    public long[] L2Offsets { get; }
    /// <summary>Per slot: the entry was non-zero but refused.</summary>
    public bool[] Damaged { get; }
    public DateTimeOffset? Date { get; }
    /// <summary>Per slot: the entry named an L2 table past the end of the file (cut off): any table still in the file is an older one.</summary>
    public bool[] PastEnd { get; }
    public long Slots => L2Offsets.Length;

    public long L2At(long slot) => slot < L2Offsets.Length ? L2Offsets[slot] : 0;
}
