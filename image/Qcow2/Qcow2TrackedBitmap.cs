using NbdQcow.Image.Qcow2.Format;

namespace NbdQcow.Image.Qcow2;

/// <summary>
/// An enabled persistent dirty bitmap held in memory while the image is open for writing: one bit per
/// granularity-sized chunk of the guest disk, set by every write, zero and trim. Bit i is bit (i % 8) of
/// byte (i / 8) on disk, as qemu serialises it (little-endian words).
/// </summary>
internal sealed class Qcow2TrackedBitmap
{
    public Qcow2TrackedBitmap(Qcow2BitmapDirectoryEntry entry, long directoryEntryOffset, long bitCount, ulong[] table)
    {
        Entry = entry;
        DirectoryEntryOffset = directoryEntryOffset;
        BitCount = bitCount;
        Table = table;
        Words = new ulong[(bitCount + 63) / 64];
    }

    public Qcow2BitmapDirectoryEntry Entry { get; }

    /// <summary>File offset of this bitmap's directory entry (its flags field is at +12).</summary>
    public long DirectoryEntryOffset { get; }

    public long BitCount { get; }

    /// <summary>The bitmap table (host offsets of data clusters; 0 = all zeros, or all ones with bit 0 set).</summary>
    public ulong[] Table { get; }

    public ulong[] Words { get; }

    public void Mark(long offset, long length)
    {
        if (length <= 0)
            return;
        int bits = Entry.GranularityBits;
        long first = offset >> bits;
        long last = Math.Min((offset + length - 1) >> bits, BitCount - 1);
        for (long bit = first; bit <= last;)
        {
            long word = bit >> 6;
            int from = (int)(bit & 63);
            int to = (int)Math.Min(63, last - (word << 6));
            ulong mask = (to - from == 63 ? ulong.MaxValue : ((1UL << (to - from + 1)) - 1)) << from;
            if ((Volatile.Read(ref Words[word]) & mask) != mask)
                Interlocked.Or(ref Words[word], mask);
            bit = (word + 1) << 6;
        }
    }

    /// <summary>Sets bits [first, first+count) (loading an all-ones table entry).</summary>
    public void SetRange(long first, long count)
    {
        for (long bit = first; bit < Math.Min(first + count, BitCount); bit++)
            Words[bit >> 6] |= 1UL << (int)(bit & 63);
    }

    /// <summary>Copies the bits of table entry <paramref name="index"/> (one data cluster) into <paramref name="cluster"/>.</summary>
    public bool Serialize(int index, Span<byte> cluster)
    {
        cluster.Clear();
        long firstBit = (long)index * cluster.Length * 8;
        bool any = false;
        for (int i = 0; i < cluster.Length / 8; i++)
        {
            long word = (firstBit >> 6) + i;
            if (word >= Words.Length)
                break;
            ulong value = Volatile.Read(ref Words[word]);
            if (value == 0)
                continue;
            any = true;
            System.Buffers.Binary.BinaryPrimitives.WriteUInt64LittleEndian(cluster[(i * 8)..], value);
        }
        return any;
    }

    /// <summary>Loads one data cluster of bits for table entry <paramref name="index"/>.</summary>
    public void Deserialize(int index, ReadOnlySpan<byte> cluster)
    {
        long firstWord = (long)index * cluster.Length / 8;
        for (int i = 0; i < cluster.Length / 8 && firstWord + i < Words.Length; i++)
            Words[firstWord + i] |= System.Buffers.Binary.BinaryPrimitives.ReadUInt64LittleEndian(cluster[(i * 8)..]);
        // Bits past the end of the disk must stay clear.
        long extra = (long)Words.Length * 64 - BitCount;
        if (extra > 0)
            Words[^1] &= ulong.MaxValue >> (int)extra;
    }
}
