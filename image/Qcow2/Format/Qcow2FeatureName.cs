namespace NbdQcow.Image.Qcow2.Format;

/// <summary>One entry of the feature-name table header extension (48 bytes on disk).</summary>
public sealed record Qcow2FeatureName(Qcow2FeatureKind Kind, byte Bit, string Name)
{
    public const int EntrySize = 48;
    public const int MaxNameLength = 46;
    /// <summary>Name of <see cref="Qcow2IncompatibleFeatures.NbdqcowJournal"/> in the feature-name table (what qemu-img prints).</summary>
    public const string JournalFeatureName = "nbdqcow journal";

    /// <summary>The names qemu writes for the bits this implementation knows (used by the creator and when naming bits).</summary>
    public static IReadOnlyList<Qcow2FeatureName> Known { get; } =
    [
        new(Qcow2FeatureKind.Incompatible, 0, "dirty bit"),
        new(Qcow2FeatureKind.Incompatible, 1, "corrupt bit"),
        new(Qcow2FeatureKind.Incompatible, 2, "external data file"),
        new(Qcow2FeatureKind.Incompatible, 3, "compression type"),
        new(Qcow2FeatureKind.Incompatible, 4, "extended L2 entries"),
        new(Qcow2FeatureKind.Incompatible, 40, JournalFeatureName),
        new(Qcow2FeatureKind.Compatible, 0, "lazy refcounts"),
        new(Qcow2FeatureKind.Autoclear, 0, "bitmaps"),
        new(Qcow2FeatureKind.Autoclear, 1, "raw external data"),
    ];
}
