using System.Security.Cryptography;

namespace NbdQcow.Image.Luks;

/// <summary>The hashes a LUKS header may name that the BCL has, by their LUKS spelling.</summary>
public static class LuksHash
{
    /// <summary>The BCL hash for a LUKS hash_spec ("sha1", "sha256", ...), or null when unsupported.</summary>
    public static HashAlgorithmName? FromSpec(string spec) => spec.ToLowerInvariant() switch
    {
        "sha1" => HashAlgorithmName.SHA1,
        "sha256" => HashAlgorithmName.SHA256,
        "sha384" => HashAlgorithmName.SHA384,
        "sha512" => HashAlgorithmName.SHA512,
        _ => null,
    };

    public static int DigestSize(HashAlgorithmName hash) => hash.Name switch
    {
        "SHA1" => 20,
        "SHA256" => 32,
        "SHA384" => 48,
        "SHA512" => 64,
        _ => throw new ArgumentException($"unsupported hash {hash.Name}"),
    };

    public static byte[] Digest(HashAlgorithmName hash, ReadOnlySpan<byte> data) => hash.Name switch
    {
        "SHA1" => SHA1.HashData(data),
        "SHA256" => SHA256.HashData(data),
        "SHA384" => SHA384.HashData(data),
        "SHA512" => SHA512.HashData(data),
        _ => throw new ArgumentException($"unsupported hash {hash.Name}"),
    };
}
