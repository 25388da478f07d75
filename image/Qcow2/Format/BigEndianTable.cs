using System.Buffers.Binary;
using System.Runtime.InteropServices;
using NbdQcow.HostIo;

namespace NbdQcow.Image.Qcow2.Format;

/// <summary>Reads and writes tables of big-endian 64-bit entries (L1, refcount table, bitmap tables).</summary>
public static class BigEndianTable
{
    /// <summary>Reads <paramref name="count"/> entries; the caller has bounded count against the file size.</summary>
    public static ulong[] Read(IHostFile file, long offset, int count)
    {
        var entries = new ulong[count];
        file.Read(offset, MemoryMarshal.AsBytes(entries.AsSpan()));
        if (BitConverter.IsLittleEndian)
            BinaryPrimitives.ReverseEndianness(entries, entries);
        return entries;
    }

    /// <summary>Encodes entries into <paramref name="destination"/> (8 bytes each).</summary>
    public static void Encode(ReadOnlySpan<ulong> entries, Span<byte> destination)
    {
        for (int i = 0; i < entries.Length; i++)
            BinaryPrimitives.WriteUInt64BigEndian(destination[(i * 8)..], entries[i]);
    }

    public static ulong Get(ReadOnlySpan<byte> table, int index) => BinaryPrimitives.ReadUInt64BigEndian(table[(index * 8)..]);

    public static void Set(Span<byte> table, int index, ulong value) => BinaryPrimitives.WriteUInt64BigEndian(table[(index * 8)..], value);
}
