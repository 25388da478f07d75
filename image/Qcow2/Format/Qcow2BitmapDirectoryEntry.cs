namespace NbdQcow.Image.Qcow2.Format;

/// <summary>One entry of the bitmap directory (persistent dirty bitmap).</summary>
public sealed record Qcow2BitmapDirectoryEntry
{
    /// <summary>Type 1 is the only one defined: dirty tracking bitmap.</summary>
    public const byte DirtyTrackingType = 1;

    public required ulong BitmapTableOffset { get; init; }
    public required uint BitmapTableSize { get; init; }
    public required Qcow2BitmapFlags Flags { get; init; }
    public byte Type { get; init; } = DirtyTrackingType;
    /// <summary>log2 of the guest bytes one bit covers.</summary>
    public required byte GranularityBits { get; init; }
    public required string Name { get; init; }
    public byte[] ExtraData { get; init; } = [];

    public bool InUse => (Flags & Qcow2BitmapFlags.InUse) != 0;
    public bool Enabled => (Flags & Qcow2BitmapFlags.Auto) != 0;
    public long Granularity => 1L << GranularityBits;
}
