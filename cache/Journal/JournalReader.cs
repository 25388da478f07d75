using System.Buffers.Binary;
using System.IO.Hashing;
using NbdQcow.HostIo;

namespace NbdQcow.Cache.Journal;

/// <summary>
/// Reads a journal file. A live journal yields the committed transactions of its header's generation with
/// consecutive sequence numbers from the header's first sequence, and stops at the first transaction that is torn,
/// garbled, of another generation or out of sequence (everything after it was never acknowledged as durable).
/// A history archive (generation 0) yields every intact transaction with increasing sequence numbers, skipping
/// damaged stretches (history is best effort).
/// </summary>
public static class JournalReader
{
    // DateTimeOffset's range: a checksummed transaction can still carry any 64-bit timestamp (a crafted file).
    private static readonly long MinTimestamp = DateTimeOffset.MinValue.ToUnixTimeMilliseconds();
    private static readonly long MaxTimestamp = DateTimeOffset.MaxValue.ToUnixTimeMilliseconds();

    public static JournalReadResult Read(IHostFile file)
    {
        var transactions = new List<JournalTransaction>();
        var header = ReadHeader(file, out var problem);
        if (header is null) return new JournalReadResult(null, transactions, 0, problem!);
        string stop = Enumerate(file, header, transactions.Add, out long end);
        return new JournalReadResult(header, transactions, end, stop);
    }

    /// <summary>The file header, or null with the reason when the file has none.</summary>
    public static JournalFileHeader? ReadHeader(IHostFile file, out string? problem)
    {
        if (file.Length < JournalFormat.BlockSize)
        {
            problem = $"journal shorter than its header block ({file.Length} bytes)";
            return null;
        }
        Span<byte> block = stackalloc byte[JournalFormat.FileHeaderSize];
        file.Read(0, block);
        return JournalFormat.ReadFileHeader(block, out problem);
    }

    /// <summary>Calls <paramref name="onTransaction"/> for each committed transaction in order; returns why it stopped.</summary>
    public static string Enumerate(IHostFile file, JournalFileHeader header, Action<JournalTransaction> onTransaction, out long endOffset)
    {
        long length = file.Length;
        long position = JournalFormat.BlockSize;
        ulong expected = header.FirstSequence;
        ulong lastSequence = 0;
        bool any = false;
        var head = new byte[JournalFormat.TransactionHeaderSize];
        while (true)
        {
            endOffset = position;
            if (position + JournalFormat.BlockSize > length) return "end of file";
            var transaction = TryReadAt(file, position, header, head, out string? problem);
            if (transaction is not null && !header.IsArchive)
            {
                if (transaction.Generation != header.Generation)
                    problem = $"transaction of generation {transaction.Generation} (journal is at {header.Generation}): stale";
                else if (transaction.Sequence != expected)
                    problem = $"sequence gap: expected {expected}, found {transaction.Sequence}";
            }
            else if (transaction is not null && any && transaction.Sequence <= lastSequence)
            {
                problem = $"sequence {transaction.Sequence} does not follow {lastSequence}";
            }
            if (transaction is null || problem is not null)
            {
                if (!header.IsArchive) return $"at offset {position}: {problem}";
                position += JournalFormat.BlockSize; // archive: look for the next intact transaction
                continue;
            }
            onTransaction(transaction);
            any = true;
            lastSequence = transaction.Sequence;
            expected = transaction.Sequence + 1;
            position += transaction.FileBytes;
        }
    }

    private static JournalTransaction? TryReadAt(IHostFile file, long position, JournalFileHeader header, byte[] head, out string? problem)
    {
        file.Read(position, head);
        uint magic = BinaryPrimitives.ReadUInt32LittleEndian(head);
        if (magic != JournalFormat.TransactionMagic)
        {
            problem = magic == 0 ? "no further transaction" : $"bad transaction magic 0x{magic:x8}";
            return null;
        }
        if (BinaryPrimitives.ReadUInt64LittleEndian(head.AsSpan(56)) != XxHash64.HashToUInt64(head.AsSpan(0, 56)))
        {
            problem = "transaction header checksum mismatch";
            return null;
        }
        int count = (int)Math.Min(BinaryPrimitives.ReadUInt32LittleEndian(head.AsSpan(4)), int.MaxValue);
        ulong generation = BinaryPrimitives.ReadUInt64LittleEndian(head.AsSpan(8));
        ulong sequence = BinaryPrimitives.ReadUInt64LittleEndian(head.AsSpan(16));
        long timestamp = BinaryPrimitives.ReadInt64LittleEndian(head.AsSpan(24));
        int tableSize = (int)BinaryPrimitives.ReadUInt32LittleEndian(head.AsSpan(32));
        long padded = (long)BinaryPrimitives.ReadUInt64LittleEndian(head.AsSpan(40));
        if (timestamp < MinTimestamp || timestamp > MaxTimestamp)
        {
            problem = $"timestamp {timestamp} out of range (garbled)";
            return null;
        }
        if (tableSize != header.TableSize)
        {
            problem = $"table size {tableSize} differs from the journal's {header.TableSize}";
            return null;
        }
        long expectedLength = JournalFormat.PaddedLength(count, tableSize);
        if (padded != expectedLength || padded > JournalFormat.MaxTransactionBytes)
        {
            problem = $"transaction length {padded} does not match {count} tables";
            return null;
        }
        if (position + padded > file.Length)
        {
            problem = "transaction runs past the end of the file (torn append)";
            return null;
        }
        var bytes = new byte[padded];
        file.Read(position, bytes);
        int trailer = JournalFormat.TransactionHeaderSize + 8 * count + count * tableSize;
        var t = bytes.AsSpan(trailer);
        if (BinaryPrimitives.ReadUInt32LittleEndian(t) != JournalFormat.CommitMagic
            || BinaryPrimitives.ReadUInt32LittleEndian(t[4..]) != (uint)count
            || BinaryPrimitives.ReadUInt64LittleEndian(t[8..]) != sequence
            || BinaryPrimitives.ReadUInt64LittleEndian(t[16..]) != generation)
        {
            problem = "commit record missing (torn append)";
            return null;
        }
        if (BinaryPrimitives.ReadUInt64LittleEndian(t[24..]) != XxHash64.HashToUInt64(bytes.AsSpan(0, trailer)))
        {
            problem = "transaction checksum mismatch (torn or garbled)";
            return null;
        }
        var tables = new JournalTableImage[count];
        for (int i = 0; i < count; i++)
        {
            long offset = BinaryPrimitives.ReadInt64LittleEndian(bytes.AsSpan(JournalFormat.TransactionHeaderSize + 8 * i));
            if (offset < 0 || offset % tableSize != 0)
            {
                problem = $"table offset {offset} not aligned to the table size";
                return null;
            }
            int imageStart = JournalFormat.TransactionHeaderSize + 8 * count + i * tableSize;
            tables[i] = new JournalTableImage(offset, bytes.AsSpan(imageStart, tableSize).ToArray());
        }
        problem = null;
        return new JournalTransaction(generation, sequence, DateTimeOffset.FromUnixTimeMilliseconds(timestamp), tables) { FileBytes = padded };
    }
}
