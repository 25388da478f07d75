namespace NbdQcow.Image.Luks;

/// <summary>
/// Encrypts and decrypts whole 512-byte sectors in place, the IV of each derived from its sector number
/// (LUKS1 sectors are always 512 bytes). Thread-safe: each call borrows a worker with its own AES transforms.
/// </summary>
public abstract class SectorCipher : IDisposable
{
    public const int SectorSize = 512;

    /// <summary>Encrypts <paramref name="data"/> (a whole number of sectors) in place; its first sector is <paramref name="firstSector"/>.</summary>
    public abstract void Encrypt(long firstSector, Span<byte> data);

    /// <summary>Decrypts <paramref name="data"/> (a whole number of sectors) in place; its first sector is <paramref name="firstSector"/>.</summary>
    public abstract void Decrypt(long firstSector, Span<byte> data);

    public abstract void Dispose();

    protected static void EnsureWholeSectors(int length)
    {
        if ((length & (SectorSize - 1)) != 0)
            throw new ArgumentException($"length {length} is not a whole number of {SectorSize}-byte sectors");
    }
}
