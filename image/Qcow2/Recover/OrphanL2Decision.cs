namespace NbdQcow.Image.Qcow2.Recover;

/// <summary>What recovery decided for one L2 table found in the file that no valid L1 entry points at.</summary>
/// <param name="HostOffset">Where the table lies in the damaged file.</param>
/// <param name="DataClusters">Entries of the table that map data (standard or compressed).</param>
/// <param name="PlacedSlot">The L1 slot it was placed at in the output, or null when it went to lost+found.</param>
/// <param name="CandidateSlots">L1 slots it could belong to (capped; <paramref name="CandidateSlotCount"/> is exact).</param>
/// <param name="Reason">Why it was placed there, or why it could not be placed.</param>
public sealed record OrphanL2Decision(
    long HostOffset, int DataClusters, long? PlacedSlot, IReadOnlyList<long> CandidateSlots, long CandidateSlotCount, string Reason);
