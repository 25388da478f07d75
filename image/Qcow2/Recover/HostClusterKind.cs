namespace NbdQcow.Image.Qcow2.Recover;

/// <summary>What an unreferenced host cluster looks like.</summary>
internal enum HostClusterKind
{
    /// <summary>All zero: nothing to recover.</summary>
    Free,
    /// <summary>Every entry a valid L2 entry into this file, at least one mapping data: an orphan L2 table.</summary>
    L2Table,
    /// <summary>Small refcounts only: a refcount block no longer in the refcount table.</summary>
    RefcountBlock,
    /// <summary>Every entry points at metadata: an old L1 or refcount table copy.</summary>
    StaleTable,
    /// <summary>Anything else: guest data no table maps.</summary>
    Data,
}
