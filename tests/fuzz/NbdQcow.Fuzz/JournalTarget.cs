using System.Buffers.Binary;
using System.IO.Hashing;
using NbdQcow.Cache.Journal;
using NbdQcow.HostIo;
using NbdQcow.Image;
using NbdQcow.Image.Qcow2;
using NbdQcow.Image.Qcow2.Journal;

namespace NbdQcow.Fuzz;

/// <summary>
/// The metadata journal: the input is a journal file (its checksums recomputed first, so the fuzzer reaches the
/// fields behind them), read by JournalReader, then laid over a small real qcow2 image (512-byte clusters, the
/// journal bit set) through the open path: read-only (overlay) and read-write (replay on disk), then reads.
/// </summary>
public sealed class JournalTarget : IFuzzTarget
{
    private const int ClusterSize = 512;
    private static readonly Lazy<byte[]> BaseImage = new(CreateBaseImage);

    public string Name => "journal";

    public string Description => "JournalReader + journal overlay/replay on a real qcow2 image (checksums fixed up)";

    public void Run(byte[] input)
    {
        var journal = (byte[])input.Clone();
        FixChecksums(journal);
        using (var file = new MemoryHostFile("/fuzz/image.qcow2.journal", journal, readOnly: true))
            JournalReader.Read(new ReadOnlyHostFile(file));

        string folder = ScratchFolder.Fresh();
        string image = Path.Combine(folder, "image.qcow2");
        foreach (bool readOnly in new[] { true, false })
        {
            File.WriteAllBytes(image, BaseImage.Value);
            File.WriteAllBytes(Qcow2JournalFiles.JournalPath(image), journal);
            try
            {
                OpenAndReadAsync(image, readOnly).GetAwaiter().GetResult();
            }
            catch (Exception e) when (ExpectedFailures.IsBadInputOutcome(e))
            {
            }
        }
    }

    private static async Task OpenAndReadAsync(string path, bool readOnly)
    {
        await using var image = Qcow2Image.Open(path, new ImageOpenOptions { ReadOnly = readOnly, MaxDirtyAge = null }, HostFile.Open);
        var buffer = new byte[64 * 1024];
        var extents = new List<BlockExtent>();
        for (long offset = 0; offset < image.Size; offset += image.Size / 4)
        {
            await image.ReadAsync(offset, buffer.AsMemory(0, (int)Math.Min(buffer.Length, image.Size - offset))).ConfigureAwait(false);
            extents.Clear();
            await image.GetBlockStatusAsync(offset, image.Size - offset, extents).ConfigureAwait(false);
        }
    }

    /// <summary>Recomputes the file header checksum and, for every block that starts a transaction, its header and commit checksums.</summary>
    public static void FixChecksums(byte[] journal)
    {
        if (journal.Length < JournalFormat.FileHeaderSize) return;
        BinaryPrimitives.WriteUInt64LittleEndian(journal.AsSpan(40), XxHash64.HashToUInt64(journal.AsSpan(0, 40)));
        for (long position = JournalFormat.BlockSize; position + JournalFormat.TransactionHeaderSize <= journal.Length; position += JournalFormat.BlockSize)
        {
            var head = journal.AsSpan((int)position, JournalFormat.TransactionHeaderSize);
            if (BinaryPrimitives.ReadUInt32LittleEndian(head) != JournalFormat.TransactionMagic) continue;
            BinaryPrimitives.WriteUInt64LittleEndian(head[56..], XxHash64.HashToUInt64(head[..56]));
            long count = BinaryPrimitives.ReadUInt32LittleEndian(head[4..]);
            long tableSize = BinaryPrimitives.ReadUInt32LittleEndian(head[32..]);
            long trailer = JournalFormat.TransactionHeaderSize + 8 * count + count * tableSize;
            if (position + trailer + JournalFormat.CommitTrailerSize > journal.Length) continue;
            var checksum = XxHash64.HashToUInt64(journal.AsSpan((int)position, (int)trailer));
            BinaryPrimitives.WriteUInt64LittleEndian(journal.AsSpan((int)(position + trailer + 24)), checksum);
        }
    }

    private static byte[] CreateBaseImage()
    {
        string path = Path.Combine(ScratchFolder.Fresh(), "base.qcow2");
        Qcow2Creator.Create(path, new Qcow2CreateOptions { Size = 1 << 20, ClusterSize = ClusterSize });
        var bytes = File.ReadAllBytes(path);
        // Set the journal bit (incompatible feature bit 40): the open path must then take the journal's tables.
        ulong incompatible = BinaryPrimitives.ReadUInt64BigEndian(bytes.AsSpan(72));
        BinaryPrimitives.WriteUInt64BigEndian(bytes.AsSpan(72), incompatible | (1UL << 40));
        return bytes;
    }
}
