namespace NbdQcow.Image.Qcow2.Format;

/// <summary>Autoclear feature bits (header offset 88): a writer that does not know a bit clears it.</summary>
[Flags]
public enum Qcow2AutoclearFeatures : ulong
{
    None = 0,
    /// <summary>The bitmaps extension is consistent with the image contents.</summary>
    Bitmaps = 1UL << 0,
    /// <summary>The external data file is a valid raw image by itself (guest offset = host offset).</summary>
    DataFileRaw = 1UL << 1,
}
