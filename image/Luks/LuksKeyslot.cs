namespace NbdQcow.Image.Luks;

/// <summary>One of the eight LUKS1 keyslots: where its split key material lies and how its key is derived.</summary>
public sealed record LuksKeyslot
{
    public const uint ActiveMarker = 0x00AC71F3;
    public const uint InactiveMarker = 0x0000DEAD;

    public bool Active { get; init; }
    public uint Iterations { get; init; }
    public byte[] Salt { get; init; } = new byte[LuksHeader.SaltLength];
    /// <summary>Start of the key material in 512-byte sectors from the start of the LUKS header.</summary>
    public uint KeyMaterialSector { get; init; }
    public uint Stripes { get; init; }
}
