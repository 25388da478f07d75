namespace NbdQcow.Image.Qcow2.Recover;

/// <summary>The outcome of placing orphan L2 tables: which slot got which table, and which host clusters any orphan table claims.</summary>
internal sealed class OrphanL2Placement
{
    public OrphanL2Placement(long fileClusters) => Claimed = new HostClusterBitmap(fileClusters);

    /// <summary>L1 slot -> host offset of the orphan L2 table placed there.</summary>
    public Dictionary<long, long> PlacedBySlot { get; } = new();
    /// <summary>Tables that could not be placed, with the decision naming their candidate slots.</summary>
    public List<OrphanL2Decision> Unplaced { get; } = new();
    /// <summary>Host clusters mapped by any orphan L2 table (so they are not also counted as orphan data).</summary>
    public HostClusterBitmap Claimed { get; }
}
