using System.Buffers.Binary;
using System.Security.Cryptography;

namespace NbdQcow.Image.Luks;

/// <summary>
/// LUKS's anti-forensic splitter: a key is stored as <c>stripes</c> blocks, all but the last random, each folded
/// into the next with the hash's diffusion, so recovering it needs every stripe (erasing any one erases the key).
/// </summary>
public static class AntiForensicSplitter
{
    /// <summary>Recovers the key of <paramref name="key"/>.Length bytes from <paramref name="split"/> (stripes × key length).</summary>
    public static void Merge(HashAlgorithmName hash, ReadOnlySpan<byte> split, int stripes, Span<byte> key)
    {
        int blockSize = key.Length;
        if (split.Length < (long)stripes * blockSize || stripes < 1)
            throw new ArgumentException("split key material too short for its stripes");
        var block = new byte[blockSize];
        for (int i = 0; i < stripes - 1; i++)
        {
            XtsSectorCipher.Xor(block, split.Slice(i * blockSize, blockSize), block);
            Diffuse(hash, block);
        }
        XtsSectorCipher.Xor(block, split.Slice((stripes - 1) * blockSize, blockSize), key);
    }

    /// <summary>Splits <paramref name="key"/> into <paramref name="split"/> (stripes × key length) with random stripes.</summary>
    public static void Split(HashAlgorithmName hash, ReadOnlySpan<byte> key, int stripes, Span<byte> split)
    {
        int blockSize = key.Length;
        var block = new byte[blockSize];
        RandomNumberGenerator.Fill(split[..((stripes - 1) * blockSize)]);
        for (int i = 0; i < stripes - 1; i++)
        {
            XtsSectorCipher.Xor(block, split.Slice(i * blockSize, blockSize), block);
            Diffuse(hash, block);
        }
        XtsSectorCipher.Xor(block, key, split.Slice((stripes - 1) * blockSize, blockSize));
    }

    /// <summary>Replaces each digest-sized piece of <paramref name="block"/> with hash(piece index, big-endian ‖ piece).</summary>
    private static void Diffuse(HashAlgorithmName hash, byte[] block)
    {
        int digestSize = LuksHash.DigestSize(hash);
        var input = new byte[4 + digestSize];
        for (int i = 0, offset = 0; offset < block.Length; i++, offset += digestSize)
        {
            int n = Math.Min(digestSize, block.Length - offset);
            BinaryPrimitives.WriteUInt32BigEndian(input, (uint)i);
            block.AsSpan(offset, n).CopyTo(input.AsSpan(4));
            byte[] digest = LuksHash.Digest(hash, input.AsSpan(0, 4 + n));
            digest.AsSpan(0, n).CopyTo(block.AsSpan(offset));
        }
    }
}
