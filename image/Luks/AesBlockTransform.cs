using System.Security.Cryptography;

namespace NbdQcow.Image.Luks;

/// <summary>
/// AES-ECB over whole 16-byte blocks with one key, kept open: the BCL's one-shot EncryptEcb sets the key up again
/// on every call, a cached transform does not. Not thread-safe; one per worker.
/// </summary>
internal sealed class AesBlockTransform : IDisposable
{
    public const int BlockSize = 16;
    private readonly Aes _aes;
    private readonly ICryptoTransform _encryptor;
    private readonly ICryptoTransform _decryptor;

    public AesBlockTransform(ReadOnlySpan<byte> key)
    {
        _aes = Aes.Create();
        _aes.Key = key.ToArray();
        _aes.Mode = CipherMode.ECB;
        _aes.Padding = PaddingMode.None;
        _encryptor = _aes.CreateEncryptor();
        _decryptor = _aes.CreateDecryptor();
    }

    /// <summary>Encrypts <paramref name="count"/> bytes of <paramref name="buffer"/> at <paramref name="offset"/> in place.</summary>
    public void Encrypt(byte[] buffer, int offset, int count)
    {
        if (count > 0) _encryptor.TransformBlock(buffer, offset, count, buffer, offset);
    }

    public void Decrypt(byte[] buffer, int offset, int count)
    {
        if (count > 0) _decryptor.TransformBlock(buffer, offset, count, buffer, offset);
    }

    public void Dispose()
    {
        _encryptor.Dispose();
        _decryptor.Dispose();
        _aes.Dispose();
    }
}
