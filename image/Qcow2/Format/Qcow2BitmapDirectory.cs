using System.Buffers.Binary;
using System.Text;

namespace NbdQcow.Image.Qcow2.Format;

/// <summary>Parses and serialises the bitmap directory (entries of 24 bytes + extra data + name, 8-byte aligned).</summary>
public static class Qcow2BitmapDirectory
{
    private const int FixedEntrySize = 24;
    /// <summary>qemu's limits on names and bitmap tables.</summary>
    public const int MaxNameSize = 1023;
    public const uint MaxTableSize = 0x4000000;
    public const int MinGranularityBits = 9;
    public const int MaxGranularityBits = 31;

    public static IReadOnlyList<Qcow2BitmapDirectoryEntry> Parse(ReadOnlySpan<byte> directory, uint count)
    {
        var entries = new List<Qcow2BitmapDirectoryEntry>();
        int offset = 0;
        for (int i = 0; i < count; i++)
        {
            string field = $"bitmap directory entry {i}";
            if (offset + FixedEntrySize > directory.Length)
                throw new Qcow2FormatException(field, offset, "runs past the end of the bitmap directory");
            var e = directory[offset..];
            uint extraSize = BinaryPrimitives.ReadUInt32BigEndian(e[20..]);
            int nameSize = BinaryPrimitives.ReadUInt16BigEndian(e[18..]);
            if (nameSize > MaxNameSize)
                throw new Qcow2FormatException($"{field} name_size", nameSize, $"longer than {MaxNameSize}");
            if (extraSize > (uint)directory.Length)
                throw new Qcow2FormatException($"{field} extra_data_size", extraSize, "larger than the bitmap directory");
            int entrySize = FixedEntrySize + (int)extraSize + nameSize;
            if (offset + entrySize > directory.Length)
                throw new Qcow2FormatException(field, offset, "runs past the end of the bitmap directory");
            var entry = new Qcow2BitmapDirectoryEntry
            {
                BitmapTableOffset = BinaryPrimitives.ReadUInt64BigEndian(e),
                BitmapTableSize = BinaryPrimitives.ReadUInt32BigEndian(e[8..]),
                Flags = (Qcow2BitmapFlags)BinaryPrimitives.ReadUInt32BigEndian(e[12..]),
                Type = e[16],
                GranularityBits = e[17],
                ExtraData = e.Slice(FixedEntrySize, (int)extraSize).ToArray(),
                Name = Encoding.UTF8.GetString(e.Slice(FixedEntrySize + (int)extraSize, nameSize)),
            };
            if (entry.GranularityBits is < MinGranularityBits or > MaxGranularityBits)
                throw new Qcow2FormatException($"{field} granularity_bits", entry.GranularityBits, $"must be {MinGranularityBits}..{MaxGranularityBits}");
            if (entry.BitmapTableSize > MaxTableSize)
                throw new Qcow2FormatException($"{field} bitmap_table_size", entry.BitmapTableSize, $"larger than {MaxTableSize}");
            entries.Add(entry);
            offset += (entrySize + 7) & ~7;
        }
        return entries;
    }

    public static int EntrySize(Qcow2BitmapDirectoryEntry e) =>
        (FixedEntrySize + e.ExtraData.Length + Encoding.UTF8.GetByteCount(e.Name) + 7) & ~7;

    public static byte[] Serialize(IReadOnlyList<Qcow2BitmapDirectoryEntry> entries)
    {
        int size = 0;
        foreach (var e in entries)
            size += EntrySize(e);
        var buffer = new byte[size];
        int offset = 0;
        foreach (var entry in entries)
        {
            var e = buffer.AsSpan(offset);
            var name = Encoding.UTF8.GetBytes(entry.Name);
            BinaryPrimitives.WriteUInt64BigEndian(e, entry.BitmapTableOffset);
            BinaryPrimitives.WriteUInt32BigEndian(e[8..], entry.BitmapTableSize);
            BinaryPrimitives.WriteUInt32BigEndian(e[12..], (uint)entry.Flags);
            e[16] = entry.Type;
            e[17] = entry.GranularityBits;
            BinaryPrimitives.WriteUInt16BigEndian(e[18..], checked((ushort)name.Length));
            BinaryPrimitives.WriteUInt32BigEndian(e[20..], (uint)entry.ExtraData.Length);
            entry.ExtraData.CopyTo(e[FixedEntrySize..]);
            name.CopyTo(e[(FixedEntrySize + entry.ExtraData.Length)..]);
            offset += EntrySize(entry);
        }
        return buffer;
    }
}
