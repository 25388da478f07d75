namespace NbdQcow.Image.Luks;

/// <summary>How a sector's IV is made from its number (dm-crypt's names, as LUKS stores them).</summary>
public enum SectorIvMode
{
    /// <summary>The low 32 bits of the sector number, little-endian.</summary>
    Plain,
    /// <summary>The 64-bit sector number, little-endian.</summary>
    Plain64,
    /// <summary>The 64-bit sector number encrypted with a key hashed from the volume key.</summary>
    Essiv,
}
