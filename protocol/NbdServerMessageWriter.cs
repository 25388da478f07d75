using System.Buffers;
using System.Buffers.Binary;
using System.Text;

namespace NbdQcow.Protocol;

/// <summary>Writes what a server sends: greeting, option replies, EXPORT_NAME reply, reply headers and chunk payloads.</summary>
public static class NbdServerMessageWriter
{
    public static void WriteGreeting(IBufferWriter<byte> writer, NbdHandshakeFlags flags)
    {
        var span = writer.GetSpan(18);
        BinaryPrimitives.WriteUInt64BigEndian(span, NbdMagic.InitPassword);
        BinaryPrimitives.WriteUInt64BigEndian(span[8..], NbdMagic.IHaveOpt);
        BinaryPrimitives.WriteUInt16BigEndian(span[16..], (ushort)flags);
        writer.Advance(18);
    }

    public static void WriteOptionReplyHeader(IBufferWriter<byte> writer, NbdOption option, NbdOptionReplyType type, uint length)
    {
        var span = writer.GetSpan(NbdLimits.OptionReplyHeaderSize);
        BinaryPrimitives.WriteUInt64BigEndian(span, NbdMagic.OptionReply);
        BinaryPrimitives.WriteUInt32BigEndian(span[8..], (uint)option);
        BinaryPrimitives.WriteUInt32BigEndian(span[12..], (uint)type);
        BinaryPrimitives.WriteUInt32BigEndian(span[16..], length);
        writer.Advance(NbdLimits.OptionReplyHeaderSize);
    }

    /// <summary>An option reply with no payload (NBD_REP_ACK).</summary>
    public static void WriteOptionAck(IBufferWriter<byte> writer, NbdOption option)
        => WriteOptionReplyHeader(writer, option, NbdOptionReplyType.Ack, 0);

    /// <summary>An error reply whose payload is a human-readable message.</summary>
    public static void WriteOptionError(IBufferWriter<byte> writer, NbdOption option, NbdOptionReplyType error, string message)
    {
        var length = Utf8Length(message);
        WriteOptionReplyHeader(writer, option, error, (uint)length);
        WriteUtf8(writer, message, length);
    }

    /// <summary>NBD_REP_SERVER for NBD_OPT_LIST: name length, name, description.</summary>
    public static void WriteServerReply(IBufferWriter<byte> writer, string name, string? description)
    {
        var nameLength = Utf8Length(name);
        var descriptionLength = Utf8Length(description ?? "");
        WriteOptionReplyHeader(writer, NbdOption.List, NbdOptionReplyType.Server, (uint)(4 + nameLength + descriptionLength));
        WriteUInt32(writer, (uint)nameLength);
        WriteUtf8(writer, name, nameLength);
        WriteUtf8(writer, description ?? "", descriptionLength);
    }

    public static void WriteInfoExport(IBufferWriter<byte> writer, NbdOption option, ulong size, NbdTransmissionFlags flags)
    {
        WriteOptionReplyHeader(writer, option, NbdOptionReplyType.Info, 12);
        var span = writer.GetSpan(12);
        BinaryPrimitives.WriteUInt16BigEndian(span, (ushort)NbdInfoType.Export);
        BinaryPrimitives.WriteUInt64BigEndian(span[2..], size);
        BinaryPrimitives.WriteUInt16BigEndian(span[10..], (ushort)flags);
        writer.Advance(12);
    }

    /// <summary>NBD_INFO_NAME or NBD_INFO_DESCRIPTION: the info type followed by the string.</summary>
    public static void WriteInfoString(IBufferWriter<byte> writer, NbdOption option, NbdInfoType type, string value)
    {
        var length = Utf8Length(value);
        WriteOptionReplyHeader(writer, option, NbdOptionReplyType.Info, (uint)(2 + length));
        WriteUInt16(writer, (ushort)type);
        WriteUtf8(writer, value, length);
    }

    public static void WriteInfoBlockSize(IBufferWriter<byte> writer, NbdOption option, uint minimum, uint preferred, uint maximum)
    {
        WriteOptionReplyHeader(writer, option, NbdOptionReplyType.Info, 14);
        var span = writer.GetSpan(14);
        BinaryPrimitives.WriteUInt16BigEndian(span, (ushort)NbdInfoType.BlockSize);
        BinaryPrimitives.WriteUInt32BigEndian(span[2..], minimum);
        BinaryPrimitives.WriteUInt32BigEndian(span[6..], preferred);
        BinaryPrimitives.WriteUInt32BigEndian(span[10..], maximum);
        writer.Advance(14);
    }

    /// <summary>NBD_REP_META_CONTEXT: context id (0 when listing) and name.</summary>
    public static void WriteMetaContextReply(IBufferWriter<byte> writer, NbdOption option, uint contextId, string name)
    {
        var length = Utf8Length(name);
        WriteOptionReplyHeader(writer, option, NbdOptionReplyType.MetaContext, (uint)(4 + length));
        WriteUInt32(writer, contextId);
        WriteUtf8(writer, name, length);
    }

    /// <summary>Reply to NBD_OPT_EXPORT_NAME: size, flags, and 124 zero bytes unless NO_ZEROES was agreed.</summary>
    public static void WriteExportNameReply(IBufferWriter<byte> writer, ulong size, NbdTransmissionFlags flags, bool noZeroes)
    {
        var total = noZeroes ? 10 : 134;
        var span = writer.GetSpan(total);
        BinaryPrimitives.WriteUInt64BigEndian(span, size);
        BinaryPrimitives.WriteUInt16BigEndian(span[8..], (ushort)flags);
        span.Slice(10, total - 10).Clear();
        writer.Advance(total);
    }

    /// <summary>Simple reply header (16 bytes); a successful READ's data follows it.</summary>
    public static void WriteSimpleReply(IBufferWriter<byte> writer, NbdErrno error, ulong cookie)
    {
        var span = writer.GetSpan(NbdLimits.SimpleReplyHeaderSize);
        BinaryPrimitives.WriteUInt32BigEndian(span, NbdMagic.SimpleReply);
        BinaryPrimitives.WriteUInt32BigEndian(span[4..], (uint)error);
        BinaryPrimitives.WriteUInt64BigEndian(span[8..], cookie);
        writer.Advance(NbdLimits.SimpleReplyHeaderSize);
    }

    /// <summary>
    /// Header of one reply chunk: 20-byte structured header, or with extended headers the 32-byte form that also
    /// echoes the request's offset. <paramref name="payloadLength"/> counts the bytes that follow.
    /// </summary>
    public static void WriteChunkHeader(IBufferWriter<byte> writer, NbdReplyStyle style, NbdReplyFlags flags, NbdReplyType type, ulong cookie, ulong requestOffset, ulong payloadLength)
    {
        if (style == NbdReplyStyle.Extended)
        {
            var span = writer.GetSpan(NbdLimits.ExtendedReplyHeaderSize);
            BinaryPrimitives.WriteUInt32BigEndian(span, NbdMagic.ExtendedReply);
            BinaryPrimitives.WriteUInt16BigEndian(span[4..], (ushort)flags);
            BinaryPrimitives.WriteUInt16BigEndian(span[6..], (ushort)type);
            BinaryPrimitives.WriteUInt64BigEndian(span[8..], cookie);
            BinaryPrimitives.WriteUInt64BigEndian(span[16..], requestOffset);
            BinaryPrimitives.WriteUInt64BigEndian(span[24..], payloadLength);
            writer.Advance(NbdLimits.ExtendedReplyHeaderSize);
        }
        else
        {
            if (payloadLength > uint.MaxValue)
            {
                throw new ArgumentOutOfRangeException(nameof(payloadLength), "structured chunks carry at most 4 GiB");
            }
            var span = writer.GetSpan(NbdLimits.StructuredReplyHeaderSize);
            BinaryPrimitives.WriteUInt32BigEndian(span, NbdMagic.StructuredReply);
            BinaryPrimitives.WriteUInt16BigEndian(span[4..], (ushort)flags);
            BinaryPrimitives.WriteUInt16BigEndian(span[6..], (ushort)type);
            BinaryPrimitives.WriteUInt64BigEndian(span[8..], cookie);
            BinaryPrimitives.WriteUInt32BigEndian(span[16..], (uint)payloadLength);
            writer.Advance(NbdLimits.StructuredReplyHeaderSize);
        }
    }

    /// <summary>
    /// A complete success reply without payload: a simple reply, or with extended headers an NBD_REPLY_TYPE_NONE
    /// chunk flagged DONE (simple replies are not allowed there).
    /// </summary>
    public static void WriteSuccess(IBufferWriter<byte> writer, NbdReplyStyle style, ulong cookie, ulong requestOffset)
    {
        if (style == NbdReplyStyle.Extended)
        {
            WriteChunkHeader(writer, style, NbdReplyFlags.Done, NbdReplyType.None, cookie, requestOffset, 0);
        }
        else
        {
            WriteSimpleReply(writer, NbdErrno.None, cookie);
        }
    }

    /// <summary>
    /// A complete error reply: simple reply for simple style or when <paramref name="preferChunk"/> is false
    /// in structured style, else an NBD_REPLY_TYPE_ERROR chunk flagged DONE carrying the message.
    /// </summary>
    public static void WriteError(IBufferWriter<byte> writer, NbdReplyStyle style, ulong cookie, ulong requestOffset, NbdErrno error, string message, bool preferChunk)
    {
        if (style == NbdReplyStyle.Simple || (style == NbdReplyStyle.Structured && !preferChunk))
        {
            WriteSimpleReply(writer, error, cookie);
            return;
        }
        var length = Math.Min(Utf8Length(message), NbdLimits.MaxString);
        WriteChunkHeader(writer, style, NbdReplyFlags.Done, NbdReplyType.Error, cookie, requestOffset, (ulong)(6 + length));
        var span = writer.GetSpan(6);
        BinaryPrimitives.WriteUInt32BigEndian(span, (uint)error);
        BinaryPrimitives.WriteUInt16BigEndian(span[4..], (ushort)length);
        writer.Advance(6);
        WriteUtf8(writer, message, length);
    }

    /// <summary>A complete NBD_REPLY_TYPE_ERROR_OFFSET chunk: the error concerns the byte at <paramref name="errorOffset"/>.</summary>
    public static void WriteErrorOffset(IBufferWriter<byte> writer, NbdReplyStyle style, NbdReplyFlags flags, ulong cookie, ulong requestOffset, NbdErrno error, string message, ulong errorOffset)
    {
        var length = Math.Min(Utf8Length(message), NbdLimits.MaxString);
        WriteChunkHeader(writer, style, flags, NbdReplyType.ErrorOffset, cookie, requestOffset, (ulong)(14 + length));
        var span = writer.GetSpan(6);
        BinaryPrimitives.WriteUInt32BigEndian(span, (uint)error);
        BinaryPrimitives.WriteUInt16BigEndian(span[4..], (ushort)length);
        writer.Advance(6);
        WriteUtf8(writer, message, length);
        WriteUInt64(writer, errorOffset);
    }

    /// <summary>Header and offset of an NBD_REPLY_TYPE_OFFSET_DATA chunk; the caller appends <paramref name="dataLength"/> bytes.</summary>
    public static void WriteOffsetDataHeader(IBufferWriter<byte> writer, NbdReplyStyle style, NbdReplyFlags flags, ulong cookie, ulong requestOffset, ulong dataOffset, int dataLength)
    {
        WriteChunkHeader(writer, style, flags, NbdReplyType.OffsetData, cookie, requestOffset, 8 + (ulong)dataLength);
        WriteUInt64(writer, dataOffset);
    }

    /// <summary>A complete NBD_REPLY_TYPE_OFFSET_HOLE chunk: <paramref name="holeLength"/> bytes at <paramref name="holeOffset"/> read as zero.</summary>
    public static void WriteOffsetHole(IBufferWriter<byte> writer, NbdReplyStyle style, NbdReplyFlags flags, ulong cookie, ulong requestOffset, ulong holeOffset, uint holeLength)
    {
        WriteChunkHeader(writer, style, flags, NbdReplyType.OffsetHole, cookie, requestOffset, 12);
        var span = writer.GetSpan(12);
        BinaryPrimitives.WriteUInt64BigEndian(span, holeOffset);
        BinaryPrimitives.WriteUInt32BigEndian(span[8..], holeLength);
        writer.Advance(12);
    }

    /// <summary>
    /// Header of a block status chunk for <paramref name="count"/> descriptors: NBD_REPLY_TYPE_BLOCK_STATUS with
    /// compact headers, BLOCK_STATUS_EXT (with descriptor count) with extended headers. Follow with
    /// <see cref="WriteBlockDescriptor"/> per extent.
    /// </summary>
    public static void WriteBlockStatusHeader(IBufferWriter<byte> writer, NbdReplyStyle style, NbdReplyFlags flags, ulong cookie, ulong requestOffset, uint contextId, int count)
    {
        if (style == NbdReplyStyle.Extended)
        {
            WriteChunkHeader(writer, style, flags, NbdReplyType.BlockStatusExtended, cookie, requestOffset, 8 + (ulong)count * 16);
            var span = writer.GetSpan(8);
            BinaryPrimitives.WriteUInt32BigEndian(span, contextId);
            BinaryPrimitives.WriteUInt32BigEndian(span[4..], (uint)count);
            writer.Advance(8);
        }
        else
        {
            WriteChunkHeader(writer, style, flags, NbdReplyType.BlockStatus, cookie, requestOffset, 4 + (ulong)count * 8);
            WriteUInt32(writer, contextId);
        }
    }

    /// <summary>One descriptor: 32-bit length and flags, or 64-bit each with extended headers.</summary>
    public static void WriteBlockDescriptor(IBufferWriter<byte> writer, NbdReplyStyle style, ulong length, uint flags)
    {
        if (style == NbdReplyStyle.Extended)
        {
            var span = writer.GetSpan(16);
            BinaryPrimitives.WriteUInt64BigEndian(span, length);
            BinaryPrimitives.WriteUInt64BigEndian(span[8..], flags);
            writer.Advance(16);
        }
        else
        {
            if (length > uint.MaxValue)
            {
                throw new ArgumentOutOfRangeException(nameof(length), "compact descriptors carry at most 4 GiB - 1");
            }
            var span = writer.GetSpan(8);
            BinaryPrimitives.WriteUInt32BigEndian(span, (uint)length);
            BinaryPrimitives.WriteUInt32BigEndian(span[4..], flags);
            writer.Advance(8);
        }
    }

    internal static int Utf8Length(string value) => Encoding.UTF8.GetByteCount(value);

    internal static void WriteUtf8(IBufferWriter<byte> writer, string value, int length)
    {
        if (length == 0)
        {
            return;
        }
        var span = writer.GetSpan(length);
        var written = Encoding.UTF8.GetBytes(value.AsSpan(), span[..length]);
        writer.Advance(written);
    }

    internal static void WriteUInt16(IBufferWriter<byte> writer, ushort value)
    {
        BinaryPrimitives.WriteUInt16BigEndian(writer.GetSpan(2), value);
        writer.Advance(2);
    }

    internal static void WriteUInt32(IBufferWriter<byte> writer, uint value)
    {
        BinaryPrimitives.WriteUInt32BigEndian(writer.GetSpan(4), value);
        writer.Advance(4);
    }

    internal static void WriteUInt64(IBufferWriter<byte> writer, ulong value)
    {
        BinaryPrimitives.WriteUInt64BigEndian(writer.GetSpan(8), value);
        writer.Advance(8);
    }
}
