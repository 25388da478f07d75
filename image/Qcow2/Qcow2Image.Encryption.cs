using NbdQcow.Image.Luks;
using NbdQcow.Image.Qcow2.Format;

namespace NbdQcow.Image.Qcow2;

// LUKS-encrypted images (crypt_method 2): the LUKS header area named by the full-disk-encryption extension is
// metadata; guest data clusters are encrypted with their host offset as sector number, through DataFile.
public sealed partial class Qcow2Image
{
    /// <summary>The LUKS header of an encrypted image, or null.</summary>
    public LuksHeader? Encryption { get; private set; }

    /// <summary>Where the LUKS header area lies in the image file, or null when not encrypted.</summary>
    internal (long Offset, long Length)? EncryptionArea { get; private set; }

    /// <summary>Encrypted, opened without its key (metadata only, for info): data clusters cannot be read.</summary>
    public bool IsEncryptionLocked { get; private set; }

    /// <summary>Reads the LUKS header, unlocks it with the key of the options and puts the cipher under DataFile.</summary>
    private void OpenEncryption()
    {
        EncryptionArea = Qcow2HeaderValidator.EncryptionHeaderArea(Header, File.Length);
        if (EncryptionArea is not { } area) return;
        var bytes = new byte[area.Length];
        File.Read(area.Offset, bytes);
        LuksHeader luks;
        try
        {
            luks = LuksHeader.Parse(bytes);
            LuksVolume.EnsureSupported(luks);
        }
        catch (LuksFormatException e)
        {
            throw new Qcow2FormatException("encryption header", $"LUKS at 0x{area.Offset:x}", e.Message);
        }
        Encryption = luks;
        if (Options.EncryptionKey is not { } secret)
        {
            if (IsReadOnly && Options.OpenEncryptedWithoutKey)
            {
                IsEncryptionLocked = true;
                return;
            }
            throw new EncryptionKeyException($"the image is encrypted (LUKS {luks.CipherSpec}); give its key with --key-file FILE " +
                "(config key KeyFile, or the NBDQCOW_KEY environment variable)");
        }
        byte[] key;
        try
        {
            key = LuksVolume.Unlock(luks, bytes, secret);
        }
        catch (LuksFormatException e)
        {
            throw new Qcow2FormatException("encryption header", $"LUKS at 0x{area.Offset:x}", e.Message);
        }
        var cipher = LuksVolume.CreateCipher(luks, key);
        System.Security.Cryptography.CryptographicOperations.ZeroMemory(key);
        DataFile = new EncryptedDataFile(DataFile, cipher, ownsInner: !ReferenceEquals(DataFile, File));
    }

    private BlockDeviceException EncryptedWithoutKey(long guestOffset) =>
        new(BlockError.Io, $"qcow2 image {Path} is encrypted and was opened without its key: guest data at 0x{guestOffset:x} cannot be read");
}
