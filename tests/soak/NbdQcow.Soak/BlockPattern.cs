using System.Buffers.Binary;

namespace NbdQcow.Soak;

/// <summary>
/// The content a write puts in one 4 KiB block: block number and write tag in the first 16 bytes, then a
/// pseudo-random stream seeded by both, so a block read back names the write it came from and any torn,
/// shifted or foreign content is detected. Tag 0 is the all-zero block.
/// </summary>
public static class BlockPattern
{
    public const int BlockSize = 4096;

    public static void Fill(Span<byte> block, long blockIndex, long tag)
    {
        if (tag == 0)
        {
            block[..BlockSize].Clear();
            return;
        }
        BinaryPrimitives.WriteInt64LittleEndian(block, blockIndex);
        BinaryPrimitives.WriteInt64LittleEndian(block[8..], tag);
        ulong state = Seed(blockIndex, tag);
        for (int at = 16; at < BlockSize; at += 8)
            BinaryPrimitives.WriteUInt64LittleEndian(block[at..], Next(ref state));
    }

    /// <summary>The tag of the write that produced <paramref name="block"/>, 0 for zeroes, or null when it is no write's content.</summary>
    public static long? Identify(ReadOnlySpan<byte> block, long blockIndex)
    {
        block = block[..BlockSize];
        if (!block.ContainsAnyExcept((byte)0)) return 0;
        if (BinaryPrimitives.ReadInt64LittleEndian(block) != blockIndex) return null;
        long tag = BinaryPrimitives.ReadInt64LittleEndian(block[8..]);
        if (tag <= 0) return null;
        ulong state = Seed(blockIndex, tag);
        for (int at = 16; at < BlockSize; at += 8)
            if (BinaryPrimitives.ReadUInt64LittleEndian(block[at..]) != Next(ref state)) return null;
        return tag;
    }

    private static ulong Seed(long blockIndex, long tag) =>
        ((ulong)blockIndex * 0x9E3779B97F4A7C15UL) ^ ((ulong)tag * 0xC2B2AE3D27D4EB4FUL) ^ 0x5DEECE66DUL;

    private static ulong Next(ref ulong state)
    {
        // xorshift64*: cheap, and every 8 bytes depend on block and tag.
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        return state * 0x2545F4914F6CDD1DUL;
    }
}
