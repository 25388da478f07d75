using System.Buffers.Binary;
using NbdQcow.Cache.Journal;
using NbdQcow.HostIo;
using NbdQcow.Image;
using NbdQcow.Image.Qcow2;
using NbdQcow.Image.Qcow2.Format;
using NbdQcow.Image.Qcow2.Journal;
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
    private readonly TempDirectory _folder = new();

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

    /// <summary>
    /// The fuzzer's input: a checksummed journal whose transaction names a table at 0x00f7fffffffffe00. Replay
    /// wrote it there, growing the 2 KiB image file to 62 PB (sparse), and the clean close then spent minutes
    /// walking refcounts up to that end. Replay now refuses a table past the file's end that the image's refcounts
    /// do not count, and one on the header, before writing anything.
    /// </summary>
    [Theory]
    [InlineData(0x00f7fffffffffe00L, "past the image file's end")]
    [InlineData(0L, "overwrite the image header")]
    public void Journal_table_where_the_image_has_no_cluster_is_refused_before_anything_is_written(long tableOffset, string problem)
    {
        string image = _folder.File("image.qcow2");
        Qcow2Creator.Create(image, new Qcow2CreateOptions { Size = 1 << 20, ClusterSize = TableSize });
        var bytes = File.ReadAllBytes(image);
        ulong incompatible = BinaryPrimitives.ReadUInt64BigEndian(bytes.AsSpan(72));
        BinaryPrimitives.WriteUInt64BigEndian(bytes.AsSpan(72), incompatible | (ulong)Qcow2IncompatibleFeatures.NbdqcowJournal);
        File.WriteAllBytes(image, bytes);
        var journal = new byte[2 * JournalFormat.BlockSize];
        JournalFormat.WriteFileHeader(journal, TableSize, generation: 1, firstSequence: 1, createdUnixMs: 0x01a243672d23);
        JournalFormat.EncodeTransaction(journal.AsSpan(JournalFormat.BlockSize), 1, 1, 0x01a243672dac, TableSize, [tableOffset], [new byte[TableSize]]);
        File.WriteAllBytes(Qcow2JournalFiles.JournalPath(image), journal);

        foreach (bool readOnly in new[] { true, false })
        {
            var e = Assert.Throws<Qcow2FormatException>(() =>
                Qcow2Image.Open(image, new ImageOpenOptions { ReadOnly = readOnly, MaxDirtyAge = null }, HostFile.Open).DisposeAsync().AsTask().GetAwaiter().GetResult());
            Assert.Contains(problem, e.Message);
            Assert.Contains("belongs to another image", e.Message);
        }
        Assert.Equal(bytes, File.ReadAllBytes(image));
    }
}
