using System.Buffers.Binary;

namespace NbdQcow.Image.Qcow2.Format;

/// <summary>
/// Reads and writes one refcount in a refcount block of any width (refcount_order 0..6). Sub-byte widths pack
/// entries from the least significant bit of each byte up, as qemu does; wider ones are big-endian.
/// </summary>
public static class RefcountBlockCodec
{
    public static ulong Get(ReadOnlySpan<byte> block, int index, int refcountOrder) => refcountOrder switch
    {
        0 => (ulong)(block[index >> 3] >> (index & 7)) & 1,
        1 => (ulong)(block[index >> 2] >> (2 * (index & 3))) & 3,
        2 => (ulong)(block[index >> 1] >> (4 * (index & 1))) & 15,
        3 => block[index],
        4 => BinaryPrimitives.ReadUInt16BigEndian(block[(index * 2)..]),
        5 => BinaryPrimitives.ReadUInt32BigEndian(block[(index * 4)..]),
        6 => BinaryPrimitives.ReadUInt64BigEndian(block[(index * 8)..]),
        _ => throw new ArgumentOutOfRangeException(nameof(refcountOrder)),
    };

    public static ulong MaxValue(int refcountOrder) => refcountOrder == 6 ? ulong.MaxValue : (1UL << (1 << refcountOrder)) - 1;

    public static void Set(Span<byte> block, int index, int refcountOrder, ulong value)
    {
        if (value > MaxValue(refcountOrder))
            throw new ArgumentOutOfRangeException(nameof(value), $"refcount {value} does not fit in {1 << refcountOrder} bits");
        switch (refcountOrder)
        {
            case 0: SetBits(ref block[index >> 3], index & 7, 1, value); break;
            case 1: SetBits(ref block[index >> 2], 2 * (index & 3), 3, value); break;
            case 2: SetBits(ref block[index >> 1], 4 * (index & 1), 15, value); break;
            case 3: block[index] = (byte)value; break;
            case 4: BinaryPrimitives.WriteUInt16BigEndian(block[(index * 2)..], (ushort)value); break;
            case 5: BinaryPrimitives.WriteUInt32BigEndian(block[(index * 4)..], (uint)value); break;
            case 6: BinaryPrimitives.WriteUInt64BigEndian(block[(index * 8)..], value); break;
            default: throw new ArgumentOutOfRangeException(nameof(refcountOrder));
        }
    }

    private static void SetBits(ref byte target, int shift, int mask, ulong value) =>
        target = (byte)((target & ~(mask << shift)) | ((int)value << shift));
}
