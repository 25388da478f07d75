namespace NbdQcow.Image.Qcow2.Format;

/// <summary>Bitmap directory entry flags.</summary>
[Flags]
public enum Qcow2BitmapFlags : uint
{
    None = 0,
    /// <summary>The bitmap is being modified (open by a writer) and may be stale on disk.</summary>
    InUse = 1u << 0,
    /// <summary>The bitmap is enabled: every write must be recorded in it.</summary>
    Auto = 1u << 1,
    /// <summary>Extra data may be ignored by implementations that do not understand it.</summary>
    ExtraDataCompatible = 1u << 2,
}
