namespace NbdQcow.Tests.Interop.Infrastructure;

/// <summary>Deterministic test data: the same seed always gives the same bytes, so a mismatch is reproducible.</summary>
public static class TestPattern
{
    public static byte[] Bytes(int seed, int length)
    {
        var data = new byte[length];
        new Random(seed).NextBytes(data);
        return data;
    }

    /// <summary>Fails with the first differing offset (absolute, via <paramref name="baseOffset"/>) instead of a huge dump.</summary>
    public static void AssertEqual(ReadOnlySpan<byte> expected, ReadOnlySpan<byte> actual, long baseOffset, string what)
    {
        if (expected.Length != actual.Length)
        {
            Assert.Fail($"{what}: expected {expected.Length} bytes, got {actual.Length}");
        }

        var index = expected.CommonPrefixLength(actual);
        if (index != expected.Length)
        {
            Assert.Fail($"{what}: first difference at byte {baseOffset + index}: " +
                        $"expected 0x{expected[index]:x2}, got 0x{actual[index]:x2}");
        }
    }
}
