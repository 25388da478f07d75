using NbdQcow.Cache.Journal;
using NbdQcow.Tests.Unit.MetadataCache;

namespace NbdQcow.Tests.Unit.Journal;

/// <summary>
/// The journal's record format: what the writer appends reads back exactly, and the reader stops at the first
/// transaction that is torn, truncated, garbled, stale (older generation) or out of sequence, never replaying past it.
/// </summary>
public sealed class JournalRecordFormatTests
{
    private const int TableSize = 4096;

    private static byte[] Table(byte fill, int salt = 0)
    {
        var table = new byte[TableSize];
        table.AsSpan().Fill(fill);
        table[salt % TableSize] ^= 0x5a;
        return table;
    }

    /// <summary>A fresh journal with three committed transactions (sequences 1..3); returns the file and each transaction's offset.</summary>
    private static (RecordingMemoryHostFile File, long[] Offsets) ThreeTransactions()
    {
        var file = new RecordingMemoryHostFile();
        var journal = new MetadataJournal(file, TableSize, previous: null, history: null, checkpointBytes: 1 << 30);
        journal.Start();
        var offsets = new long[3];
        for (int i = 0; i < 3; i++)
        {
            offsets[i] = JournalFormat.BlockSize + journal.LiveBytes;
            journal.Commit([8192L * (i + 1), 65536], [Table((byte)(i + 1)), Table((byte)(0x10 + i), i)]);
        }
        return (file, offsets);
    }

    private static JournalReadResult ReadBack(RecordingMemoryHostFile file) => JournalReader.Read(file);

    [Fact]
    public void Committed_transactions_read_back_in_order_with_sequence_numbers_and_exact_table_images()
    {
        var (file, _) = ThreeTransactions();
        var read = ReadBack(file);
        Assert.NotNull(read.Header);
        Assert.Equal(new ulong[] { 1, 2, 3 }, read.Transactions.Select(t => t.Sequence));
        for (int i = 0; i < 3; i++)
        {
            var t = read.Transactions[i];
            Assert.Equal([8192L * (i + 1), 65536], t.Tables.Select(x => x.Offset));
            Assert.Equal(Table((byte)(i + 1)), t.Tables[0].Image);
            Assert.Equal(Table((byte)(0x10 + i), i), t.Tables[1].Image);
        }
        Assert.Equal(4UL, read.NextSequence);
    }

    [Fact]
    public void Every_commit_is_one_append_followed_by_one_barrier()
    {
        var file = new RecordingMemoryHostFile();
        var journal = new MetadataJournal(file, TableSize, null, null, 1 << 30);
        journal.Start();
        file.ClearLog();
        journal.Commit([0L, 4096, 8192], [Table(1), Table(2), Table(3)]);
        Assert.Equal(2, file.Log.Count);
        Assert.StartsWith("W ", file.Log[0]);
        Assert.Equal("F", file.Log[1]);
    }

    [Fact]
    public void A_truncated_last_transaction_is_not_replayed()
    {
        var (file, offsets) = ThreeTransactions();
        file.SetLength(offsets[2] + 2 * JournalFormat.BlockSize); // the append of transaction 3 stopped midway
        var read = ReadBack(file);
        Assert.Equal(new ulong[] { 1, 2 }, read.Transactions.Select(t => t.Sequence));
        Assert.Contains("torn", read.StopReason);
    }

    [Fact]
    public void A_torn_transaction_missing_one_inner_block_is_not_replayed_nor_anything_after_it()
    {
        var (file, offsets) = ThreeTransactions();
        file.Write(offsets[1] + JournalFormat.BlockSize, new byte[JournalFormat.BlockSize]); // one 4 KiB block never reached disk
        var read = ReadBack(file);
        Assert.Equal(new ulong[] { 1 }, read.Transactions.Select(t => t.Sequence));
        Assert.Contains("checksum", read.StopReason);
    }

    [Fact]
    public void A_garbled_byte_in_a_table_image_fails_the_checksum()
    {
        var (file, offsets) = ThreeTransactions();
        var one = new byte[1];
        file.Read(offsets[2] + 200, one);
        one[0] ^= 1;
        file.Write(offsets[2] + 200, one);
        var read = ReadBack(file);
        Assert.Equal(new ulong[] { 1, 2 }, read.Transactions.Select(t => t.Sequence));
        Assert.Contains("checksum mismatch", read.StopReason);
    }

    [Fact]
    public void A_garbled_transaction_header_stops_the_reader()
    {
        var (file, offsets) = ThreeTransactions();
        file.Write(offsets[1] + 16, new byte[] { 9 }); // the sequence field
        var read = ReadBack(file);
        Assert.Single(read.Transactions);
        Assert.Contains("header checksum", read.StopReason);
    }

    [Fact]
    public void A_sequence_gap_stops_the_reader()
    {
        var (file, offsets) = ThreeTransactions();
        // Replace transaction 2 by a well-formed one numbered 5: intact, but not the next in sequence.
        var buffer = new byte[JournalFormat.PaddedLength(1, TableSize)];
        JournalFormat.EncodeTransaction(buffer, 1, 5, 0, TableSize, [4096L], [Table(7)]);
        file.Write(offsets[1], buffer);
        var read = ReadBack(file);
        Assert.Single(read.Transactions);
        Assert.Contains("sequence gap", read.StopReason);
    }

    [Fact]
    public void Transactions_of_an_older_generation_left_behind_a_reset_are_stale()
    {
        var (file, offsets) = ThreeTransactions();
        var old = new byte[file.Length - offsets[0]];
        file.Read(offsets[0], old);
        var journal = new MetadataJournal(file, TableSize, ReadBack(file), null, 1 << 30);
        journal.Reset(); // generation 2, file cut back to its header
        file.Write(offsets[0], old); // the old generation's records reappear (say the cut did not reach disk)
        var read = ReadBack(file);
        Assert.Equal(2UL, read.Header!.Generation);
        Assert.Empty(read.Transactions);
        Assert.Contains("stale", read.StopReason);
        Assert.Equal(4UL, read.NextSequence); // sequences continue across generations
    }

    [Fact]
    public void A_garbled_file_header_is_not_a_journal()
    {
        var (file, _) = ThreeTransactions();
        file.Write(20, new byte[] { 0xff });
        var read = ReadBack(file);
        Assert.Null(read.Header);
        Assert.Empty(read.Transactions);
        Assert.Contains("checksum", read.StopReason);
    }

    [Fact]
    public void Reset_moves_retired_transactions_into_the_history_archive_which_reads_them_all()
    {
        var dir = Path.Combine(Path.GetTempPath(), "nbdqcow-journal-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        try
        {
            var (file, _) = ThreeTransactions();
            var history = new JournalHistoryArchive(Path.Combine(dir, "h"), NbdQcow.HostIo.HostFile.Open, 1 << 30);
            var journal = new MetadataJournal(file, TableSize, ReadBack(file), history, 1 << 30);
            journal.Reset();
            journal.Commit([4096L], [Table(9)]);
            journal.Reset();
            using var archive = NbdQcow.HostIo.HostFile.Open(history.Path, new NbdQcow.HostIo.HostFileOptions(true, false));
            var read = JournalReader.Read(archive);
            Assert.True(read.Header!.IsArchive);
            Assert.Equal(new ulong[] { 1, 2, 3, 4 }, read.Transactions.Select(t => t.Sequence));
            Assert.Equal(Table(9), read.Transactions[3].Tables[0].Image);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
