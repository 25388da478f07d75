using System.Buffers.Binary;
using System.Text;

namespace NbdQcow.Protocol;

/// <summary>Parses the payloads of structured/extended reply chunks (client side).</summary>
public static class NbdChunkPayloadParser
{
    /// <summary>NBD_REPLY_TYPE_OFFSET_DATA starts with the 64-bit offset of the data that follows.</summary>
    public static NbdParseStatus TryParseOffsetDataPrefix(ReadOnlySpan<byte> payload, out ulong offset)
    {
        offset = 0;
        if (payload.Length < 8)
        {
            return NbdParseStatus.Invalid;
        }
        offset = BinaryPrimitives.ReadUInt64BigEndian(payload);
        return NbdParseStatus.Complete;
    }

    /// <summary>NBD_REPLY_TYPE_OFFSET_HOLE: 64-bit offset, 32-bit hole length.</summary>
    public static NbdParseStatus TryParseOffsetHole(ReadOnlySpan<byte> payload, out ulong offset, out uint length)
    {
        offset = 0;
        length = 0;
        if (payload.Length != 12)
        {
            return NbdParseStatus.Invalid;
        }
        offset = BinaryPrimitives.ReadUInt64BigEndian(payload);
        length = BinaryPrimitives.ReadUInt32BigEndian(payload[8..]);
        return NbdParseStatus.Complete;
    }

    /// <summary>
    /// NBD_REPLY_TYPE_BLOCK_STATUS (32-bit context id, then 8-byte descriptors) or BLOCK_STATUS_EXT
    /// (context id, 32-bit count, then 16-byte descriptors). Appends the descriptors to <paramref name="extents"/>.
    /// </summary>
    public static NbdParseStatus TryParseBlockStatus(ReadOnlySpan<byte> payload, NbdReplyType type, List<NbdBlockDescriptor> extents, out uint contextId)
    {
        contextId = 0;
        if (type == NbdReplyType.BlockStatus)
        {
            if (payload.Length < 12 || (payload.Length - 4) % 8 != 0)
            {
                return NbdParseStatus.Invalid;
            }
            contextId = BinaryPrimitives.ReadUInt32BigEndian(payload);
            for (var at = 4; at < payload.Length; at += 8)
            {
                extents.Add(new NbdBlockDescriptor(
                    BinaryPrimitives.ReadUInt32BigEndian(payload[at..]),
                    BinaryPrimitives.ReadUInt32BigEndian(payload[(at + 4)..])));
            }
            return NbdParseStatus.Complete;
        }
        if (type == NbdReplyType.BlockStatusExtended)
        {
            if (payload.Length < 8)
            {
                return NbdParseStatus.Invalid;
            }
            contextId = BinaryPrimitives.ReadUInt32BigEndian(payload);
            var count = BinaryPrimitives.ReadUInt32BigEndian(payload[4..]);
            if (count == 0 || (ulong)payload.Length != 8 + (ulong)count * 16)
            {
                return NbdParseStatus.Invalid;
            }
            for (var at = 8; at < payload.Length; at += 16)
            {
                extents.Add(new NbdBlockDescriptor(
                    BinaryPrimitives.ReadUInt64BigEndian(payload[at..]),
                    BinaryPrimitives.ReadUInt64BigEndian(payload[(at + 8)..])));
            }
            return NbdParseStatus.Complete;
        }
        return NbdParseStatus.Invalid;
    }

    /// <summary>NBD_REPLY_TYPE_ERROR (errno, 16-bit message length, message) or ERROR_OFFSET (same + 64-bit offset).</summary>
    public static NbdParseStatus TryParseError(ReadOnlySpan<byte> payload, NbdReplyType type, out NbdErrno error, out string message, out ulong? offset)
    {
        error = NbdErrno.None;
        message = "";
        offset = null;
        if (payload.Length < 6)
        {
            return NbdParseStatus.Invalid;
        }
        error = (NbdErrno)BinaryPrimitives.ReadUInt32BigEndian(payload);
        int messageLength = BinaryPrimitives.ReadUInt16BigEndian(payload[4..]);
        var expected = 6 + messageLength + (type == NbdReplyType.ErrorOffset ? 8 : 0);
        if (payload.Length != expected || (type != NbdReplyType.Error && type != NbdReplyType.ErrorOffset))
        {
            return NbdParseStatus.Invalid;
        }
        message = Encoding.UTF8.GetString(payload.Slice(6, messageLength));
        if (type == NbdReplyType.ErrorOffset)
        {
            offset = BinaryPrimitives.ReadUInt64BigEndian(payload[(6 + messageLength)..]);
        }
        return NbdParseStatus.Complete;
    }
}
