using NbdQcow.Cache.Journal;
using NbdQcow.HostIo;
using NbdQcow.Image;
using NbdQcow.Image.Qcow2;
using NbdQcow.Image.Qcow2.Format;
using NbdQcow.Image.Qcow2.Journal;
using NbdQcow.Tests.Unit.MetadataCache;
using NbdQcow.Tests.Unit.Qcow2Write;

namespace NbdQcow.Tests.Unit.Journal;

/// <summary>
/// The qcow2 side of the journal: what a flush writes, the incompatible bit, replay on a read-write open, the
/// in-memory view of read-only opens, replay stopping at a torn transaction, checkpoints at close and the history.
/// A "crash" copies the image and journal files as the page cache holds them after a completed flush.
/// </summary>
public sealed class Qcow2JournalReplayTests
{
    private const long Size = 16 << 20;
    private static readonly ImageOpenOptions Journalled = new() { Journal = true, MaxDirtyAge = null };

    private static byte[] Pattern(byte value, int length)
    {
        var data = new byte[length];
        data.AsSpan().Fill(value);
        return data;
    }

    /// <summary>Writes two flushed batches through a journalled image and copies the files after each flush (crash states).</summary>
    private static async Task<(string AfterFirst, string AfterSecond)> TwoFlushedBatchesAsync(TempDirectory dir)
    {
        var path = dir.File("disk.qcow2");
        Qcow2Creator.Create(path, new Qcow2CreateOptions { Size = Size });
        var image = Qcow2Image.Open(path, Journalled, HostFile.Open);
        string Crash(string name)
        {
            var copy = dir.File(name + ".qcow2");
            File.Copy(path, copy);
            File.Copy(path + ".journal", copy + ".journal");
            return copy;
        }
        try
        {
            await image.WriteAsync(0, Pattern(0x11, 128 << 10), fua: false);
            await image.WriteAsync(8 << 20, Pattern(0x22, 4096), fua: false);
            await image.FlushAsync();
            var first = Crash("first");
            await image.WriteAsync(12 << 20, Pattern(0x33, 64 << 10), fua: false);
            await image.WriteAsync(0, Pattern(0x44, 4096), fua: false); // overwrite in place
            await image.FlushAsync();
            return (first, Crash("second"));
        }
        finally
        {
            await image.DisposeAsync();
        }
    }

    private static async Task<byte[]> ReadAsync(IBlockDevice device, long offset, int length)
    {
        var buffer = new byte[length];
        await device.ReadAsync(offset, buffer);
        return buffer;
    }

    private static Qcow2Header HeaderOf(string path)
    {
        using var file = HostFile.Open(path, new HostFileOptions(true, false));
        return Qcow2Header.Read(file);
    }

    [Fact]
    public async Task A_flushed_journalled_image_carries_the_named_incompatible_bit_and_qemu_img_refuses_it()
    {
        using var dir = new TempDirectory();
        var (_, crashed) = await TwoFlushedBatchesAsync(dir);
        var header = HeaderOf(crashed);
        Assert.True(Qcow2JournalReplay.HasPendingJournal(header));
        Assert.Contains(header.FeatureNames, f => f.Bit == 40 && f.Name == "nbdqcow journal");
        var (exit, output) = QemuImgTool.Run("info", "-f", "qcow2", crashed);
        Assert.NotEqual(0, exit);
        Assert.Contains("nbdqcow journal", output);
    }

    [Fact]
    public async Task Opening_read_write_replays_the_journal_clears_the_bit_and_leaves_a_clean_image_with_every_flushed_write()
    {
        using var dir = new TempDirectory();
        var (_, crashed) = await TwoFlushedBatchesAsync(dir);
        await using (var image = Qcow2Image.Open(crashed, new ImageOpenOptions { MaxDirtyAge = null }, HostFile.Open))
        {
            Assert.False(Qcow2JournalReplay.HasPendingJournal(image.Header));
            Assert.Equal(Pattern(0x44, 4096), await ReadAsync(image, 0, 4096));
            Assert.Equal(Pattern(0x11, 4096), await ReadAsync(image, 64 << 10, 4096));
            Assert.Equal(Pattern(0x22, 4096), await ReadAsync(image, 8 << 20, 4096));
            Assert.Equal(Pattern(0x33, 4096), await ReadAsync(image, 12 << 20, 4096));
        }
        Assert.False(Qcow2JournalReplay.HasPendingJournal(HeaderOf(crashed)));
        QemuImgTool.AssertClean(crashed);
        using var journal = HostFile.Open(crashed + ".journal", new HostFileOptions(true, false));
        Assert.Empty(JournalReader.Read(journal).Transactions); // retired into the history
    }

    [Fact]
    public async Task A_read_only_open_sees_the_journal_in_memory_and_writes_nothing()
    {
        using var dir = new TempDirectory();
        var (_, crashed) = await TwoFlushedBatchesAsync(dir);
        var before = File.ReadAllBytes(crashed);
        await using (var image = Qcow2Image.Open(crashed, new ImageOpenOptions { ReadOnly = true, MaxDirtyAge = null }, HostFile.Open))
        {
            Assert.Equal(2, image.PendingJournalTransactions);
            Assert.Equal(Pattern(0x33, 4096), await ReadAsync(image, 12 << 20, 4096));
            Assert.Equal(Pattern(0x22, 4096), await ReadAsync(image, 8 << 20, 4096));
        }
        Assert.Equal(before, File.ReadAllBytes(crashed));
    }

    [Fact]
    public async Task Replay_stops_at_a_torn_transaction_and_keeps_the_state_of_the_one_before()
    {
        using var dir = new TempDirectory();
        var (_, crashed) = await TwoFlushedBatchesAsync(dir);
        // Tear the second (last) transaction: one of its 4 KiB blocks holds something else.
        long second;
        using (var journal = HostFile.Open(crashed + ".journal", new HostFileOptions(false, false)))
        {
            var read = JournalReader.Read(journal);
            Assert.Equal(2, read.Transactions.Count);
            second = JournalFormat.BlockSize + read.Transactions[0].FileBytes;
            var garbage = new byte[JournalFormat.BlockSize];
            garbage.AsSpan().Fill(0xa5); // (zeroes could equal what the block held: a tear that changes nothing)
            journal.Write(second + JournalFormat.BlockSize, garbage);
        }
        await using (var image = Qcow2Image.Open(crashed, new ImageOpenOptions { MaxDirtyAge = null }, HostFile.Open))
        {
            Assert.Equal(Pattern(0x22, 4096), await ReadAsync(image, 8 << 20, 4096)); // first flush: mapped
            Assert.Equal(new byte[4096], await ReadAsync(image, 12 << 20, 4096));     // second flush's allocation: not mapped
        }
        QemuImgTool.AssertClean(crashed);
    }

    [Fact]
    public async Task Without_its_journal_an_image_with_the_bit_is_refused_by_name()
    {
        using var dir = new TempDirectory();
        var (_, crashed) = await TwoFlushedBatchesAsync(dir);
        File.Delete(crashed + ".journal");
        var error = Assert.Throws<Qcow2FormatException>(() => Qcow2Image.Open(crashed, new ImageOpenOptions { MaxDirtyAge = null }, HostFile.Open));
        Assert.Contains("nbdqcow journal", error.Message);
        Assert.Contains("missing", error.Message);
    }

    [Fact]
    public async Task A_journalled_flush_is_an_image_sync_then_one_journal_append_and_sync_with_no_table_written_in_place()
    {
        using var dir = new TempDirectory();
        var path = dir.File("disk.qcow2");
        Qcow2Creator.Create(path, new Qcow2CreateOptions { Size = Size });
        var log = new List<string>();
        IHostFile Open(string p, HostFileOptions o) =>
            new OrderLoggingHostFile(HostFile.Open(p, o), p.EndsWith(".journal") ? "journal" : "image", log);
        await using var image = Qcow2Image.Open(path, Journalled, Open);
        await image.WriteAsync(0, Pattern(1, 65536), fua: false);
        await image.FlushAsync(); // the first commit also sets the bit
        lock (log) log.Clear();
        await image.WriteAsync(1 << 20, Pattern(2, 65536), fua: false); // a new data cluster, a new L2 entry, a refcount
        await image.FlushAsync();
        Assert.Equal(["image W 65536", "image F", "journal W", "journal F"], log);
    }

    [Fact]
    public async Task A_clean_close_checkpoints_clears_the_bit_and_the_history_lists_every_commit_with_its_tables()
    {
        using var dir = new TempDirectory();
        var path = dir.File("disk.qcow2");
        Qcow2Creator.Create(path, new Qcow2CreateOptions { Size = Size });
        await using (var image = Qcow2Image.Open(path, Journalled, HostFile.Open))
        {
            for (int i = 0; i < 3; i++)
            {
                await image.WriteAsync((long)i << 20, Pattern((byte)(i + 1), 4096), fua: false);
                await image.FlushAsync();
            }
        }
        Assert.False(Qcow2JournalReplay.HasPendingJournal(HeaderOf(path)));
        QemuImgTool.AssertClean(path);
        var history = Qcow2JournalHistory.Read(path);
        Assert.Equal(new ulong[] { 1, 2, 3 }, history.Select(e => e.Sequence));
        Assert.All(history, e => Assert.True(e.IsInPlace));
        // Each commit holds the L2 table that maps the write made just before it.
        var header = HeaderOf(path);
        using var file = HostFile.Open(path, new HostFileOptions(true, false));
        var l1 = BigEndianTable.Read(file, (long)header.L1TableOffset, 1);
        long l2 = (long)(l1[0] & L1Entry.OffsetMask);
        Assert.All(history, e => Assert.Contains(e.Tables, t => t.Offset == l2));
    }
    [Theory]
    [InlineData(".journal")]
    [InlineData(".journal.history")]
    [InlineData(".journal.history.1")]
    public async Task A_file_in_a_journal_files_place_that_is_no_journal_is_refused_and_kept(string suffix)
    {
        using var dir = new TempDirectory();
        var path = dir.File("disk.qcow2");
        Qcow2Creator.Create(path, new Qcow2CreateOptions { Size = Size });
        // Another disk that happens to carry the name: the journal would be written over it (the history appended to
        // it, or renamed over .1 when it rotates).
        byte[] foreign = Pattern(0x5a, 64 << 10);
        File.WriteAllBytes(path + suffix, foreign);
        var error = Assert.Throws<IOException>(() => Qcow2Image.Open(path, Journalled, HostFile.Open));
        Assert.Contains("not an nbdqcow journal", error.Message);
        Assert.Equal(foreign, File.ReadAllBytes(path + suffix));
        // A journal left by an earlier clean run is taken as before.
        File.Delete(path + suffix);
        var first = Qcow2Image.Open(path, Journalled, HostFile.Open);
        await first.WriteAsync(0, Pattern(0x11, 4096), fua: false);
        await first.FlushAsync();
        await first.DisposeAsync();
        await (Qcow2Image.Open(path, Journalled, HostFile.Open)).DisposeAsync();
    }
}
