namespace NbdQcow.Image.Qcow2.Format;

/// <summary>Which feature field a feature-name table entry describes (its type byte).</summary>
public enum Qcow2FeatureKind : byte
{
    Incompatible = 0,
    Compatible = 1,
    Autoclear = 2,
}
