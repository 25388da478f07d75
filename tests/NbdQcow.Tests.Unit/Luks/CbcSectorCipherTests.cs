using System.Buffers.Binary;
using System.Security.Cryptography;
using NbdQcow.Image.Luks;

namespace NbdQcow.Tests.Unit.Luks;

/// <summary>The CBC sector cipher against the BCL's own CBC one-shot, with each IV mode computed independently.</summary>
public sealed class CbcSectorCipherTests
{
    [Theory]
    [InlineData(SectorIvMode.Plain, 16)]
    [InlineData(SectorIvMode.Plain64, 32)]
    [InlineData(SectorIvMode.Essiv, 32)]
    [InlineData(SectorIvMode.Essiv, 16)]
    public void Each_sector_is_aes_cbc_with_its_iv(SectorIvMode mode, int keyLength)
    {
        var key = new byte[keyLength];
        new Random(keyLength).NextBytes(key);
        using var cipher = new CbcSectorCipher(key, mode, HashAlgorithmName.SHA256);
        long first = 0x1_0000_0003L; // beyond 32 bits: plain wraps, plain64 does not
        var data = new byte[300 * 512];
        new Random(3).NextBytes(data);
        var plain = data.ToArray();
        cipher.Encrypt(first, data);

        using var aes = Aes.Create();
        aes.Key = key;
        using var essiv = Aes.Create();
        essiv.Key = SHA256.HashData(key);
        for (int s = 0; s < 300; s++)
        {
            var iv = new byte[16];
            long sector = first + s;
            if (mode == SectorIvMode.Plain) BinaryPrimitives.WriteUInt32LittleEndian(iv, (uint)sector);
            else BinaryPrimitives.WriteUInt64LittleEndian(iv, (ulong)sector);
            if (mode == SectorIvMode.Essiv) iv = essiv.EncryptEcb(iv, PaddingMode.None);
            var expected = aes.EncryptCbc(plain.AsSpan(s * 512, 512), iv, PaddingMode.None);
            Assert.True(expected.AsSpan().SequenceEqual(data.AsSpan(s * 512, 512)), $"sector {sector} differs");
        }
        cipher.Decrypt(first, data);
        Assert.Equal(plain, data);
    }
}
