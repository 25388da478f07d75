namespace NbdQcow.Image.Qcow2.Format;

/// <summary>The crypt_method header field (offset 32).</summary>
public enum Qcow2EncryptionMethod : uint
{
    None = 0,
    /// <summary>Legacy AES-CBC with the password as key.</summary>
    Aes = 1,
    Luks = 2,
}
