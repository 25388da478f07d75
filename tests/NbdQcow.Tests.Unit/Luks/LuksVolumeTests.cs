using System.Security.Cryptography;
using System.Text;
using NbdQcow.Image.Luks;

namespace NbdQcow.Tests.Unit.Luks;

public sealed class LuksVolumeTests
{
    [Theory]
    [InlineData("sha1", 64)]
    [InlineData("sha256", 64)]
    [InlineData("sha512", 24)]
    public void Anti_forensic_split_then_merge_gives_the_key_back(string hashSpec, int keyLength)
    {
        var hash = LuksHash.FromSpec(hashSpec)!.Value;
        var key = RandomNumberGenerator.GetBytes(keyLength);
        var split = new byte[keyLength * 4000];
        AntiForensicSplitter.Split(hash, key, 4000, split);
        var merged = new byte[keyLength];
        AntiForensicSplitter.Merge(hash, split, 4000, merged);
        Assert.Equal(key, merged);
        split[12345 % split.Length] ^= 1; // any one stripe damaged loses the key
        AntiForensicSplitter.Merge(hash, split, 4000, merged);
        Assert.NotEqual(key, merged);
    }

    [Fact]
    public void A_created_header_opens_with_its_secret_and_refuses_another()
    {
        var area = LuksVolume.CreateArea(Encoding.UTF8.GetBytes("right"), TimeSpan.FromMilliseconds(1));
        var header = LuksHeader.Parse(area);
        Assert.Equal("aes-xts-plain64", header.CipherSpec);
        Assert.Equal("sha256", header.HashSpec);
        Assert.Equal(64, header.KeyBytes);
        Assert.Equal(1, header.ActiveKeyslots);
        Assert.True(header.Keyslots[0].Iterations >= LuksVolume.MinIterations);
        Assert.Equal(64, LuksVolume.Unlock(header, area, Encoding.UTF8.GetBytes("right")).Length);
        var error = Assert.Throws<EncryptionKeyException>(() => LuksVolume.Unlock(header, area, Encoding.UTF8.GetBytes("wrong")));
        Assert.Contains("wrong key", error.Message);
    }

    [Theory]
    [InlineData("twofish", "xts-plain64", "twofish-xts-plain64")]
    [InlineData("aes", "ecb", "aes-ecb")]
    [InlineData("aes", "cbc-benbi", "aes-cbc-benbi")]
    [InlineData("aes", "xts-essiv:sha256", "aes-xts-essiv:sha256")]
    public void Unsupported_cipher_or_mode_is_refused_naming_it(string cipher, string mode, string named)
    {
        var area = LuksVolume.CreateArea("k"u8, TimeSpan.FromMilliseconds(1));
        var parsed = LuksHeader.Parse(area);
        var header = new LuksHeader
        {
            CipherName = cipher,
            CipherMode = mode,
            HashSpec = parsed.HashSpec,
            KeyBytes = parsed.KeyBytes,
            Keyslots = parsed.Keyslots,
            MasterKeyDigest = parsed.MasterKeyDigest,
            MasterKeyDigestSalt = parsed.MasterKeyDigestSalt,
            MasterKeyDigestIterations = parsed.MasterKeyDigestIterations,
        };
        var reparsed = LuksHeader.Parse(header.Serialize());
        var error = Assert.Throws<LuksFormatException>(() => LuksVolume.EnsureSupported(reparsed));
        Assert.Contains(named, error.Message);
    }
}
