using NbdQcow.Cache;
using NbdQcow.Cache.Journal;
using NbdQcow.Tests.Unit.HostIo;

namespace NbdQcow.Tests.Unit.Fuzz;

/// <summary>
/// Journals found by tests/fuzz (target journal) that crashed the reader. The journal target recomputes the
/// checksums of its input, so these are journals with valid checksums: what a crafted file (or a bit flip
/// before the checksum was computed) presents.
/// </summary>
public sealed class FuzzFoundJournalTests : IDisposable
{
    private const int TableSize = 512;
    private readonly DiskBackedTempFolder _folder = new();

    public void Dispose() => _folder.Dispose();

    /// <summary>
    /// The fuzzer's input: a journal of 512-byte tables whose second transaction has timestamp
    /// 0x00ff01a243672dc6 (past year 9999). DateTimeOffset.FromUnixTimeMilliseconds threw ArgumentOutOfRange out
    /// of the reader, so opening the image crashed instead of stopping at the garbled transaction.
    /// </summary>
    [Fact]
    public void Transaction_with_a_timestamp_out_of_range_ends_the_journal_instead_of_throwing()
    {
        const long validTimestamp = 0x01a243672dac;
        const long hostileTimestamp = 0x00ff01a243672dc6;
        var journal = new byte[3 * JournalFormat.BlockSize];
        JournalFormat.WriteFileHeader(journal, TableSize, generation: 1, firstSequence: 1, createdUnixMs: 0x01a243672d23);
        var table = new byte[TableSize];
        table[0] = 0x80;
        JournalFormat.EncodeTransaction(journal.AsSpan(JournalFormat.BlockSize), 1, 1, validTimestamp, TableSize, [0x400L], [table]);
        JournalFormat.EncodeTransaction(journal.AsSpan(2 * JournalFormat.BlockSize), 1, 2, hostileTimestamp, TableSize, [0x600L], [table]);
        string path = _folder.File("image.qcow2.journal");
        File.WriteAllBytes(path, journal);

        using var file = HostFile.Open(path, new HostFileOptions(ReadOnly: true, Direct: false));
        var read = JournalReader.Read(file);

        var only = Assert.Single(read.Transactions);
        Assert.Equal(1UL, only.Sequence);
        Assert.Contains("timestamp", read.StopReason);
        Assert.Equal(2L * JournalFormat.BlockSize, read.EndOffset);
    }
}
