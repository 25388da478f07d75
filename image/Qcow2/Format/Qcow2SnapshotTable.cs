using System.Buffers.Binary;
using System.Text;
using NbdQcow.HostIo;

namespace NbdQcow.Image.Qcow2.Format;

/// <summary>Reads and writes the snapshot table (entries of 40 bytes + extra data + id + name, 8-byte aligned).</summary>
public static class Qcow2SnapshotTable
{
    /// <summary>qemu's limits: QCOW_MAX_SNAPSHOTS and QCOW_MAX_SNAPSHOT_EXTRA_DATA.</summary>
    public const int MaxSnapshots = 65536;
    public const int MaxExtraData = 1024;
    private const int FixedEntrySize = 40;

    public static IReadOnlyList<Qcow2Snapshot> Read(IHostFile file, Qcow2Header header, long fileLength)
    {
        var snapshots = new List<Qcow2Snapshot>();
        if (header.SnapshotCount == 0)
            return snapshots;
        if (header.SnapshotCount > MaxSnapshots)
            throw new Qcow2FormatException("nb_snapshots", header.SnapshotCount, $"more than {MaxSnapshots} snapshots");
        long offset = checked((long)header.SnapshotsOffset);
        Span<byte> fixedPart = stackalloc byte[FixedEntrySize];
        for (int i = 0; i < header.SnapshotCount; i++)
        {
            string field = $"snapshot table entry {i}";
            if (offset + FixedEntrySize > fileLength)
                throw new Qcow2FormatException(field, offset, "lies past the end of the file");
            file.Read(offset, fixedPart);
            int idSize = BinaryPrimitives.ReadUInt16BigEndian(fixedPart[12..]);
            int nameSize = BinaryPrimitives.ReadUInt16BigEndian(fixedPart[14..]);
            uint extraSize = BinaryPrimitives.ReadUInt32BigEndian(fixedPart[36..]);
            if (extraSize > MaxExtraData)
                throw new Qcow2FormatException($"{field} extra_data_size", extraSize, $"larger than {MaxExtraData} bytes");
            int variable = (int)extraSize + idSize + nameSize;
            if (offset + FixedEntrySize + variable > fileLength)
                throw new Qcow2FormatException(field, offset, "lies past the end of the file");
            var rest = new byte[variable];
            file.Read(offset + FixedEntrySize, rest);
            var extra = rest.AsSpan(0, (int)extraSize);
            ulong vmState = BinaryPrimitives.ReadUInt32BigEndian(fixedPart[32..]);
            if (extra.Length >= 8)
                vmState = BinaryPrimitives.ReadUInt64BigEndian(extra);
            var snapshot = new Qcow2Snapshot
            {
                L1TableOffset = BinaryPrimitives.ReadUInt64BigEndian(fixedPart),
                L1Size = BinaryPrimitives.ReadUInt32BigEndian(fixedPart[8..]),
                DateSeconds = BinaryPrimitives.ReadUInt32BigEndian(fixedPart[16..]),
                DateNanoseconds = BinaryPrimitives.ReadUInt32BigEndian(fixedPart[20..]),
                VmClockNanoseconds = BinaryPrimitives.ReadUInt64BigEndian(fixedPart[24..]),
                VmStateSize = vmState,
                VirtualSize = extra.Length >= 16 ? BinaryPrimitives.ReadUInt64BigEndian(extra[8..]) : null,
                InstructionCount = extra.Length >= 24 ? BinaryPrimitives.ReadUInt64BigEndian(extra[16..]) : null,
                ExtraData = extra.ToArray(),
                Id = Encoding.UTF8.GetString(rest, (int)extraSize, idSize),
                Name = Encoding.UTF8.GetString(rest, (int)extraSize + idSize, nameSize),
            };
            snapshots.Add(snapshot);
            offset += (FixedEntrySize + variable + 7) & ~7;
        }
        return snapshots;
    }

    /// <summary>Bytes the table takes on disk.</summary>
    public static long SizeOf(IReadOnlyList<Qcow2Snapshot> snapshots)
    {
        long size = 0;
        foreach (var s in snapshots)
            size += EntrySize(s);
        return size;
    }

    private static int EntrySize(Qcow2Snapshot s) =>
        (FixedEntrySize + s.ExtraData.Length + Encoding.UTF8.GetByteCount(s.Id) + Encoding.UTF8.GetByteCount(s.Name) + 7) & ~7;

    public static byte[] Serialize(IReadOnlyList<Qcow2Snapshot> snapshots)
    {
        var buffer = new byte[SizeOf(snapshots)];
        int offset = 0;
        foreach (var s in snapshots)
        {
            var e = buffer.AsSpan(offset);
            var id = Encoding.UTF8.GetBytes(s.Id);
            var name = Encoding.UTF8.GetBytes(s.Name);
            BinaryPrimitives.WriteUInt64BigEndian(e, s.L1TableOffset);
            BinaryPrimitives.WriteUInt32BigEndian(e[8..], s.L1Size);
            BinaryPrimitives.WriteUInt16BigEndian(e[12..], checked((ushort)id.Length));
            BinaryPrimitives.WriteUInt16BigEndian(e[14..], checked((ushort)name.Length));
            BinaryPrimitives.WriteUInt32BigEndian(e[16..], s.DateSeconds);
            BinaryPrimitives.WriteUInt32BigEndian(e[20..], s.DateNanoseconds);
            BinaryPrimitives.WriteUInt64BigEndian(e[24..], s.VmClockNanoseconds);
            BinaryPrimitives.WriteUInt32BigEndian(e[32..], (uint)Math.Min(s.VmStateSize, uint.MaxValue));
            BinaryPrimitives.WriteUInt32BigEndian(e[36..], (uint)s.ExtraData.Length);
            s.ExtraData.CopyTo(e[FixedEntrySize..]);
            id.CopyTo(e[(FixedEntrySize + s.ExtraData.Length)..]);
            name.CopyTo(e[(FixedEntrySize + s.ExtraData.Length + id.Length)..]);
            offset += EntrySize(s);
        }
        return buffer;
    }
}
