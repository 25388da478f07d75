using NbdQcow.Image.Luks;

namespace NbdQcow.Tests.Unit.Luks;

/// <summary>
/// The IEEE 1619-2007 XTS-AES test vectors. Vectors 1, 2 and 5 are 32-byte data units: XTS without ciphertext
/// stealing encrypts a prefix of a sector exactly as a unit of that length, so they are checked as the first 32
/// bytes of a 512-byte sector.
/// </summary>
public sealed class XtsSectorCipherTests
{
    [Theory]
    [InlineData("00000000000000000000000000000000", "00000000000000000000000000000000", 0L, "00",
        "917cf69ebd68b2ec9b9fe9a3eadda692cd43d2f59598ed858c02c2652fbf922e")]
    [InlineData("11111111111111111111111111111111", "22222222222222222222222222222222", 0x3333333333L, "44",
        "c454185e6a16936e39334038acef838bfb186fff7480adc4289382ecd6d394f0")]
    [InlineData("fffefdfcfbfaf9f8f7f6f5f4f3f2f1f0", "bfbebdbcbbbab9b8b7b6b5b4b3b2b1b0", 0x123456789aL, "44",
        "b01f86f8edc1863706fa8a4253e34f28af319de38334870f4dd1f94cbe9832f1")]
    public void Ieee1619_vectors_with_32_byte_units(string key1, string key2, long sector, string fill, string expected)
    {
        using var cipher = new XtsSectorCipher(Convert.FromHexString(key1 + key2));
        var data = new byte[SectorCipher.SectorSize];
        Array.Fill(data, Convert.FromHexString(fill)[0]);
        var plain = data.ToArray();
        cipher.Encrypt(sector, data);
        Assert.Equal(expected, Convert.ToHexStringLower(data.AsSpan(0, 32)));
        cipher.Decrypt(sector, data);
        Assert.Equal(plain, data);
    }

    [Fact]
    public void Ieee1619_vector_4_a_whole_512_byte_sector()
    {
        using var cipher = new XtsSectorCipher(Convert.FromHexString("27182818284590452353602874713526" + "31415926535897932384626433832795"));
        var data = new byte[512];
        for (int i = 0; i < data.Length; i++) data[i] = (byte)i;
        var plain = data.ToArray();
        cipher.Encrypt(0, data);
        Assert.Equal(Vector4Ciphertext, Convert.ToHexStringLower(data));
        cipher.Decrypt(0, data);
        Assert.Equal(plain, data);
    }

    [Fact]
    public void Many_sectors_in_one_call_equal_one_sector_at_a_time_across_chunks()
    {
        var key = new byte[64];
        new Random(7).NextBytes(key);
        using var cipher = new XtsSectorCipher(key);
        var data = new byte[200 * 512]; // more than one 64 KiB chunk
        new Random(8).NextBytes(data);
        var bySector = data.ToArray();
        cipher.Encrypt(1000, data);
        for (int s = 0; s < 200; s++) cipher.Encrypt(1000 + s, bySector.AsSpan(s * 512, 512));
        Assert.Equal(bySector, data);
    }

    [Fact]
    public void Encrypting_and_decrypting_allocate_nothing_once_warm()
    {
        using var xts = new XtsSectorCipher(new byte[64]);
        using var cbc = new CbcSectorCipher(new byte[32], SectorIvMode.Essiv, System.Security.Cryptography.HashAlgorithmName.SHA256);
        var data = new byte[256 << 10];
        foreach (SectorCipher cipher in new SectorCipher[] { xts, cbc })
        {
            cipher.Encrypt(5, data);
            cipher.Decrypt(5, data);
            long before = GC.GetAllocatedBytesForCurrentThread();
            for (int i = 0; i < 10; i++)
            {
                cipher.Encrypt(5 + i, data);
                cipher.Decrypt(5 + i, data);
            }
            long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
            Assert.True(allocated == 0, $"{cipher.GetType().Name} allocated {allocated} bytes for 20 calls");
        }
    }

    private const string Vector4Ciphertext =
        "27a7479befa1d476489f308cd4cfa6e2a96e4bbe3208ff25287dd3819616e89c" +
        "c78cf7f5e543445f8333d8fa7f56000005279fa5d8b5e4ad40e736ddb4d35412" +
        "328063fd2aab53e5ea1e0a9f332500a5df9487d07a5c92cc512c8866c7e860ce" +
        "93fdf166a24912b422976146ae20ce846bb7dc9ba94a767aaef20c0d61ad0265" +
        "5ea92dc4c4e41a8952c651d33174be51a10c421110e6d81588ede82103a252d8" +
        "a750e8768defffed9122810aaeb99f9172af82b604dc4b8e51bcb08235a6f434" +
        "1332e4ca60482a4ba1a03b3e65008fc5da76b70bf1690db4eae29c5f1badd03c" +
        "5ccf2a55d705ddcd86d449511ceb7ec30bf12b1fa35b913f9f747a8afd1b130e" +
        "94bff94effd01a91735ca1726acd0b197c4e5b03393697e126826fb6bbde8ecc" +
        "1e08298516e2c9ed03ff3c1b7860f6de76d4cecd94c8119855ef5297ca67e9f3" +
        "e7ff72b1e99785ca0a7e7720c5b36dc6d72cac9574c8cbbc2f801e23e56fd344" +
        "b07f22154beba0f08ce8891e643ed995c94d9a69c9f1b5f499027a78572aeebd" +
        "74d20cc39881c213ee770b1010e4bea718846977ae119f7a023ab58cca0ad752" +
        "afe656bb3c17256a9f6e9bf19fdd5a38fc82bbe872c5539edb609ef4f79c203e" +
        "bb140f2e583cb2ad15b4aa5b655016a8449277dbd477ef2c8d6c017db738b18d" +
        "eb4a427d1923ce3ff262735779a418f20a282df920147beabe421ee5319d0568";
}
