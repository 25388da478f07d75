namespace NbdQcow.Image.Qcow2;

/// <summary>What a whole-cluster metadata-only change does to one L2 entry.</summary>
internal enum Qcow2ClusterChange
{
    /// <summary>Reads as zero afterwards; the host cluster is released.</summary>
    Zero,
    /// <summary>Reads as zero afterwards; an existing host cluster stays allocated (NBD_CMD_FLAG_NO_HOLE).</summary>
    ZeroKeepAllocation,
    /// <summary>Released; reads as zero (or, with a backing file, as zero too: backing data stays hidden).</summary>
    Trim,
}
