using System.Buffers.Binary;
using System.Text;

namespace NbdQcow.Tests.Interop.Formats;

/// <summary>
/// Writes small Bochs growing images (the layout qemu's bochs driver reads): a 512-byte header, a catalog of
/// 32-bit extent numbers, then per allocated extent a one-sector bitmap and its data. Written by hand here so the
/// server and qemu read the same bytes independently.
/// </summary>
public static class BochsImageFile
{
    public const int ExtentSize = 64 * 1024;
    private const int Sector = 512;

    /// <summary>
    /// An image of <paramref name="size"/> bytes in which every sector of <paramref name="writtenSectors"/> holds
    /// its own pattern (sector number in every byte pair), extents are stored in reverse order, and every other
    /// sector of an allocated extent has its bitmap bit clear (reads zero whatever its bytes).
    /// </summary>
    public static void Write(string path, long size, IReadOnlyCollection<long> writtenSectors)
    {
        var entries = (int)((size + ExtentSize - 1) / ExtentSize);
        var extents = writtenSectors.Select(s => s * Sector / ExtentSize).Distinct().OrderBy(e => e).ToList();
        var header = new byte[Sector];
        Encoding.ASCII.GetBytes("Bochs Virtual HD Image").CopyTo(header, 0);
        Encoding.ASCII.GetBytes("Redolog").CopyTo(header, 32);
        Encoding.ASCII.GetBytes("Growing").CopyTo(header, 48);
        BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(64), 0x00020000);
        BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(68), Sector);
        BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(72), (uint)entries);
        BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(76), Sector);
        BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(80), ExtentSize);
        BinaryPrimitives.WriteUInt64LittleEndian(header.AsSpan(88), (ulong)size);
        var catalog = new byte[entries * 4];
        catalog.AsSpan().Fill(0xff);
        var dataOffset = Sector + catalog.Length;
        var stride = Sector + ExtentSize;
        using var file = new FileStream(path, FileMode.CreateNew, FileAccess.Write);
        for (var slot = 0; slot < extents.Count; slot++)
        {
            var extent = extents[extents.Count - 1 - slot];
            BinaryPrimitives.WriteUInt32LittleEndian(catalog.AsSpan((int)extent * 4), (uint)slot);
            var bitmap = new byte[Sector];
            var data = new byte[ExtentSize];
            // Stale bytes behind clear bitmap bits must never be served.
            data.AsSpan().Fill(0xee);
            foreach (var sector in writtenSectors.Where(s => s * Sector / ExtentSize == extent))
            {
                var within = (int)(sector - extent * ExtentSize / Sector);
                bitmap[within / 8] |= (byte)(1 << (within % 8));
                Pattern(sector).CopyTo(data, within * Sector);
            }
            file.Position = dataOffset + (long)slot * stride;
            file.Write(bitmap);
            file.Write(data);
        }
        file.Position = 0;
        file.Write(header);
        file.Write(catalog);
    }

    /// <summary>What a written sector holds: its number, little-endian, in every 8-byte word.</summary>
    public static byte[] Pattern(long sector)
    {
        var bytes = new byte[Sector];
        for (var i = 0; i < Sector; i += 8) BinaryPrimitives.WriteInt64LittleEndian(bytes.AsSpan(i), sector + 1);
        return bytes;
    }
}
