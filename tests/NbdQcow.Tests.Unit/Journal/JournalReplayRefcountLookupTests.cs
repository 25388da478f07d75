using System.Buffers.Binary;
using NbdQcow.Cache.Journal;
using NbdQcow.HostIo;
using NbdQcow.Image.Qcow2;
using NbdQcow.Image.Qcow2.Format;
using NbdQcow.Image.Qcow2.Journal;

namespace NbdQcow.Tests.Unit.Journal;

/// <summary>
/// A journal that names many tables far past the image's end, each counted in use by the same refcount block:
/// checking them reads that block once, not once per table (a journal can name thousands, each a cluster read).
/// </summary>
public sealed class JournalReplayRefcountLookupTests
{
    private const int Tables = 300;

    /// <summary>Counts the bytes read from the image file.</summary>
    private sealed class ReadCountingHostFile(IHostFile inner) : HostFileDecorator(inner)
    {
        public long BytesRead;

        public override void Read(long offset, Span<byte> buffer)
        {
            BytesRead += buffer.Length;
            base.Read(offset, buffer);
        }
    }

    [Fact]
    public void Tables_past_the_end_counted_by_one_refcount_block_read_that_block_once_and_pass()
    {
        using var dir = new TempDirectory();
        var path = dir.File("disk.qcow2");
        Qcow2Creator.Create(path, new Qcow2CreateOptions { Size = 4L << 30 });
        Qcow2Header header;
        using (var file = HostFile.Open(path, new HostFileOptions(ReadOnly: false, Direct: false)))
        {
            header = Qcow2Header.Read(file);
            var geometry = Qcow2Geometry.FromHeader(header);
            long firstTable = 1536L << 20; // past the end by more than the allowed gap, in the first refcount block
            Assert.Equal(0, geometry.RefcountTableIndex(firstTable + (long)Tables * header.ClusterSize));
            var entry = new byte[8];
            file.Read((long)header.RefcountTableOffset, entry);
            long block = (long)(BinaryPrimitives.ReadUInt64BigEndian(entry) & L1Entry.OffsetMask);
            var blockBytes = new byte[header.ClusterSize];
            file.Read(block, blockBytes);
            for (int i = 0; i < Tables; i++)
                RefcountBlockCodec.Set(blockBytes, geometry.RefcountBlockIndex(firstTable + (long)i * header.ClusterSize), header.RefcountOrder, 1);
            file.Write(block, blockBytes);

            var images = new List<JournalTableImage>();
            for (int i = 0; i < Tables; i++) images.Add(new JournalTableImage(firstTable + (long)i * header.ClusterSize, new byte[header.ClusterSize]));
            var transaction = new JournalTransaction(1, 1, DateTimeOffset.UnixEpoch, images);

            var counting = new ReadCountingHostFile(file);
            Assert.Null(Qcow2JournalReplay.CheckTableOffsets([transaction], counting, header));
            Assert.True(counting.BytesRead <= 2L * header.ClusterSize,
                $"checking {Tables} tables read {counting.BytesRead} bytes: the refcount block was read again per table");

            // One more table the refcounts do not count is still refused.
            images.Add(new JournalTableImage(firstTable + (long)Tables * header.ClusterSize, new byte[header.ClusterSize]));
            var refused = Qcow2JournalReplay.CheckTableOffsets([transaction with { Tables = images }], file, header);
            Assert.NotNull(refused);
            Assert.Contains($"a table at offset {firstTable + (long)Tables * header.ClusterSize} lies past the image file's end", refused);
        }
    }
}
