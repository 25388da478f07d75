namespace NbdQcow.Image.Qcow2.Format;

/// <summary>Compatible feature bits (header offset 80): unknown ones may be ignored.</summary>
[Flags]
public enum Qcow2CompatibleFeatures : ulong
{
    None = 0,
    /// <summary>Refcount updates may be delayed; the dirty bit marks when they are stale.</summary>
    LazyRefcounts = 1UL << 0,
}
