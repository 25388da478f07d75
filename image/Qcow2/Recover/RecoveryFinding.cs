namespace NbdQcow.Image.Qcow2.Recover;

/// <summary>One piece of damage recovery found and worked around (an entry skipped, a table refused, a cluster cut short).</summary>
/// <param name="Kind">Short stable tag for machines: header, l1-entry, l2-entry, data, compressed, snapshot, refcount, bitmap, history, mapping.</param>
public sealed record RecoveryFinding(string Kind, string Message);
