using System.Buffers.Binary;
using System.IO.Hashing;

namespace NbdQcow.Cache.Journal;

/// <summary>
/// On-disk layout of the metadata journal (all integers little-endian). Block 0 (4 KiB) is the file header;
/// transactions follow, each starting on a 4 KiB boundary:
/// <code>
/// file header:  0 magic "NBDQJRNL" | 8 u32 version=1 | 12 u32 table size | 16 u64 generation | 24 u64 first sequence
///               32 i64 created (Unix ms) | 40 u64 XxHash64 of bytes 0..40
/// transaction:  0 u32 "NJTX" | 4 u32 table count N | 8 u64 generation | 16 u64 sequence | 24 i64 timestamp (Unix ms)
///               32 u32 table size | 36 u32 0 | 40 u64 padded length | 48 u64 0 | 56 u64 XxHash64 of bytes 0..56
///               64: N x u64 table offsets | then N table images (table size bytes each)
///               commit trailer: u32 "NJCM" | u32 N | u64 sequence | u64 generation | u64 XxHash64 of everything before it
///               zero padding to a multiple of 4 KiB
/// </code>
/// A transaction counts only when its header, every image and its commit trailer are intact (the trailer checksum
/// covers them all, so a torn or partly written append is never replayed) and its generation and sequence follow on.
/// Generation 0 in the file header marks a history archive (transactions of many generations, copied verbatim).
/// </summary>
public static class JournalFormat
{
    public const int BlockSize = 4096;
    public const int FileHeaderSize = 48;
    public const int TransactionHeaderSize = 64;
    public const int CommitTrailerSize = 32;
    public const uint Version = 1;
    public const uint TransactionMagic = 0x58544a4e; // "NJTX" little-endian
    public const uint CommitMagic = 0x4d434a4e;      // "NJCM" little-endian
    /// <summary>Largest transaction a reader accepts (bounds memory for a crafted file).</summary>
    public const long MaxTransactionBytes = 1L << 30;

    public static ReadOnlySpan<byte> FileMagic => "NBDQJRNL"u8;

    public static long PaddedLength(int tableCount, int tableSize) =>
        RoundUp(TransactionHeaderSize + 8L * tableCount + (long)tableCount * tableSize + CommitTrailerSize);

    public static long RoundUp(long length) => (length + BlockSize - 1) / BlockSize * BlockSize;

    public static void WriteFileHeader(Span<byte> block, int tableSize, ulong generation, ulong firstSequence, long createdUnixMs)
    {
        block.Clear();
        FileMagic.CopyTo(block);
        BinaryPrimitives.WriteUInt32LittleEndian(block[8..], Version);
        BinaryPrimitives.WriteUInt32LittleEndian(block[12..], (uint)tableSize);
        BinaryPrimitives.WriteUInt64LittleEndian(block[16..], generation);
        BinaryPrimitives.WriteUInt64LittleEndian(block[24..], firstSequence);
        BinaryPrimitives.WriteInt64LittleEndian(block[32..], createdUnixMs);
        BinaryPrimitives.WriteUInt64LittleEndian(block[40..], XxHash64.HashToUInt64(block[..40]));
    }

    /// <summary>Parses a file header; null (with a reason) when it is not one.</summary>
    public static JournalFileHeader? ReadFileHeader(ReadOnlySpan<byte> block, out string? problem)
    {
        problem = null;
        if (block.Length < FileHeaderSize || !block[..8].SequenceEqual(FileMagic))
        {
            problem = "no journal header (magic NBDQJRNL missing)";
            return null;
        }
        if (BinaryPrimitives.ReadUInt64LittleEndian(block[40..]) != XxHash64.HashToUInt64(block[..40]))
        {
            problem = "journal header checksum mismatch";
            return null;
        }
        uint version = BinaryPrimitives.ReadUInt32LittleEndian(block[8..]);
        if (version != Version)
        {
            problem = $"journal version {version} (this nbdqcow reads version {Version})";
            return null;
        }
        return new JournalFileHeader(
            (int)BinaryPrimitives.ReadUInt32LittleEndian(block[12..]),
            BinaryPrimitives.ReadUInt64LittleEndian(block[16..]),
            BinaryPrimitives.ReadUInt64LittleEndian(block[24..]),
            BinaryPrimitives.ReadInt64LittleEndian(block[32..]));
    }

    /// <summary>Encodes one transaction into <paramref name="destination"/> (at least <see cref="PaddedLength"/> bytes).</summary>
    public static int EncodeTransaction(Span<byte> destination, ulong generation, ulong sequence, long timestampUnixMs,
        int tableSize, IReadOnlyList<long> offsets, IReadOnlyList<byte[]> images)
    {
        int n = offsets.Count;
        long padded = PaddedLength(n, tableSize);
        var d = destination[..(int)padded];
        d.Clear();
        BinaryPrimitives.WriteUInt32LittleEndian(d, TransactionMagic);
        BinaryPrimitives.WriteUInt32LittleEndian(d[4..], (uint)n);
        BinaryPrimitives.WriteUInt64LittleEndian(d[8..], generation);
        BinaryPrimitives.WriteUInt64LittleEndian(d[16..], sequence);
        BinaryPrimitives.WriteInt64LittleEndian(d[24..], timestampUnixMs);
        BinaryPrimitives.WriteUInt32LittleEndian(d[32..], (uint)tableSize);
        BinaryPrimitives.WriteUInt64LittleEndian(d[40..], (ulong)padded);
        BinaryPrimitives.WriteUInt64LittleEndian(d[56..], XxHash64.HashToUInt64(d[..56]));
        int position = TransactionHeaderSize;
        for (int i = 0; i < n; i++, position += 8)
            BinaryPrimitives.WriteInt64LittleEndian(d[position..], offsets[i]);
        for (int i = 0; i < n; i++, position += tableSize)
            images[i].AsSpan(0, tableSize).CopyTo(d[position..]);
        BinaryPrimitives.WriteUInt32LittleEndian(d[position..], CommitMagic);
        BinaryPrimitives.WriteUInt32LittleEndian(d[(position + 4)..], (uint)n);
        BinaryPrimitives.WriteUInt64LittleEndian(d[(position + 8)..], sequence);
        BinaryPrimitives.WriteUInt64LittleEndian(d[(position + 16)..], generation);
        BinaryPrimitives.WriteUInt64LittleEndian(d[(position + 24)..], XxHash64.HashToUInt64(d[..position]));
        return (int)padded;
    }
}
