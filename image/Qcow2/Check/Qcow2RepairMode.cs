namespace NbdQcow.Image.Qcow2.Check;

/// <summary>What <see cref="Qcow2Checker"/> may change (as qemu-img check -r).</summary>
public enum Qcow2RepairMode
{
    /// <summary>Only report.</summary>
    None,
    /// <summary>Lower refcounts that are higher than the references (leaked clusters).</summary>
    Leaks,
    /// <summary>Rebuild the refcount structure from the references and fix COPIED flags; clears the dirty bit.</summary>
    All,
}
