using System.Buffers.Binary;
using System.Text;
using NbdQcow.Image;

namespace NbdQcow.Tests.Unit.Bochs;

/// <summary>
/// A crafted Bochs image with the largest catalog accepted (2^20 entries of 512-byte extents), alternating allocated
/// and unallocated: one block-status query over the whole disk must stay bounded, as for raw and qcow2, instead of
/// building a list of a million extents per request.
/// </summary>
public sealed class BochsBlockStatusBoundTests
{
    private const int Sector = 512;
    private const int Entries = 1 << 20;

    private static void WriteAlternatingImage(string path)
    {
        var header = new byte[Sector];
        Encoding.ASCII.GetBytes("Bochs Virtual HD Image").CopyTo(header, 0);
        Encoding.ASCII.GetBytes("Redolog").CopyTo(header, 32);
        Encoding.ASCII.GetBytes("Growing").CopyTo(header, 48);
        BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(64), 0x00020000);
        BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(68), Sector);
        BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(72), Entries);
        BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(76), Sector);
        BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(80), Sector);
        BinaryPrimitives.WriteUInt64LittleEndian(header.AsSpan(88), (ulong)Entries * Sector);
        var catalog = new byte[Entries * 4];
        for (int i = 0; i < Entries; i++)
            BinaryPrimitives.WriteUInt32LittleEndian(catalog.AsSpan(i * 4), i % 2 == 0 ? 0u : 0xffffffffu); // every allocated entry names extent 0
        using var file = new FileStream(path, FileMode.CreateNew, FileAccess.Write);
        file.Write(header);
        file.Write(catalog);
        file.Write(new byte[2 * Sector]); // extent 0: its bitmap sector and its data sector
    }

    [Fact]
    public async Task Block_status_over_a_maximally_fragmented_catalog_answers_a_bounded_prefix()
    {
        using var dir = new TempDirectory();
        var path = dir.File("frag.img");
        WriteAlternatingImage(path);
        await using var image = ImageOpener.Open(path, new ImageOpenOptions { ReadOnly = true, MaxDirtyAge = null });
        Assert.Equal((long)Entries * Sector, image.Size);

        var extents = new List<BlockExtent>();
        await image.GetBlockStatusAsync(0, image.Size, extents);

        Assert.InRange(extents.Count, 2, SingleLayerBlockStatus.MaxExtentsPerCall);
        for (int i = 0; i < extents.Count; i++)
        {
            Assert.Equal(Sector, extents[i].Length);
            Assert.Equal(i % 2 == 0 ? BlockExtentFlags.Data : BlockExtentFlags.Hole | BlockExtentFlags.Zero, extents[i].Flags);
        }
    }
}
