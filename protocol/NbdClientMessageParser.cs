using System.Buffers;
using System.Buffers.Binary;

namespace NbdQcow.Protocol;

/// <summary>Parses what a client receives: the greeting, option replies, the EXPORT_NAME reply and reply headers.</summary>
public static class NbdClientMessageParser
{
    public const int GreetingSize = 18;

    /// <summary>Parses NBDMAGIC + IHAVEOPT + handshake flags (fixed newstyle only).</summary>
    public static NbdParseStatus TryParseGreeting(in ReadOnlySequence<byte> buffer, out NbdHandshakeFlags flags, out SequencePosition consumed)
    {
        Span<byte> scratch = stackalloc byte[GreetingSize];
        flags = default;
        consumed = buffer.Start;
        if (!SequenceBytes.TryGetPrefix(buffer, GreetingSize, scratch, out var bytes))
        {
            return NbdParseStatus.NeedMoreData;
        }
        if (BinaryPrimitives.ReadUInt64BigEndian(bytes) != NbdMagic.InitPassword
            || BinaryPrimitives.ReadUInt64BigEndian(bytes[8..]) != NbdMagic.IHaveOpt)
        {
            return NbdParseStatus.BadMagic;
        }
        flags = (NbdHandshakeFlags)BinaryPrimitives.ReadUInt16BigEndian(bytes[16..]);
        consumed = buffer.GetPosition(GreetingSize);
        return NbdParseStatus.Complete;
    }

    /// <summary>Parses an option reply header; its payload is not consumed.</summary>
    public static NbdParseStatus TryParseOptionReplyHeader(in ReadOnlySequence<byte> buffer, out NbdOptionReplyHeader header, out SequencePosition consumed)
    {
        Span<byte> scratch = stackalloc byte[NbdLimits.OptionReplyHeaderSize];
        header = default;
        consumed = buffer.Start;
        if (!SequenceBytes.TryGetPrefix(buffer, NbdLimits.OptionReplyHeaderSize, scratch, out var bytes))
        {
            return NbdParseStatus.NeedMoreData;
        }
        if (BinaryPrimitives.ReadUInt64BigEndian(bytes) != NbdMagic.OptionReply)
        {
            return NbdParseStatus.BadMagic;
        }
        header = new NbdOptionReplyHeader(
            (NbdOption)BinaryPrimitives.ReadUInt32BigEndian(bytes[8..]),
            (NbdOptionReplyType)BinaryPrimitives.ReadUInt32BigEndian(bytes[12..]),
            BinaryPrimitives.ReadUInt32BigEndian(bytes[16..]));
        consumed = buffer.GetPosition(NbdLimits.OptionReplyHeaderSize);
        return NbdParseStatus.Complete;
    }

    /// <summary>Parses the reply to NBD_OPT_EXPORT_NAME: size, flags and (without NO_ZEROES) 124 zero bytes.</summary>
    public static NbdParseStatus TryParseExportNameReply(in ReadOnlySequence<byte> buffer, bool noZeroes, out ulong size, out NbdTransmissionFlags flags, out SequencePosition consumed)
    {
        Span<byte> scratch = stackalloc byte[10];
        var total = noZeroes ? 10 : 134;
        size = 0;
        flags = 0;
        consumed = buffer.Start;
        if (buffer.Length < total || !SequenceBytes.TryGetPrefix(buffer, 10, scratch, out var bytes))
        {
            return NbdParseStatus.NeedMoreData;
        }
        size = BinaryPrimitives.ReadUInt64BigEndian(bytes);
        flags = (NbdTransmissionFlags)BinaryPrimitives.ReadUInt16BigEndian(bytes[8..]);
        consumed = buffer.GetPosition(total);
        return NbdParseStatus.Complete;
    }

    /// <summary>
    /// Parses a simple (16 bytes), structured (20) or extended (32) reply header, told apart by magic.
    /// With extended headers negotiated only the extended form is valid.
    /// </summary>
    public static NbdParseStatus TryParseReplyHeader(in ReadOnlySequence<byte> buffer, bool extendedHeaders, out NbdReplyHeader header, out SequencePosition consumed)
    {
        Span<byte> scratch = stackalloc byte[NbdLimits.ExtendedReplyHeaderSize];
        header = default;
        consumed = buffer.Start;
        if (!SequenceBytes.TryGetPrefix(buffer, 4, scratch, out var magicBytes))
        {
            return NbdParseStatus.NeedMoreData;
        }
        var magic = BinaryPrimitives.ReadUInt32BigEndian(magicBytes);
        int size;
        if (extendedHeaders)
        {
            if (magic != NbdMagic.ExtendedReply)
            {
                return NbdParseStatus.BadMagic;
            }
            size = NbdLimits.ExtendedReplyHeaderSize;
        }
        else if (magic == NbdMagic.SimpleReply)
        {
            size = NbdLimits.SimpleReplyHeaderSize;
        }
        else if (magic == NbdMagic.StructuredReply)
        {
            size = NbdLimits.StructuredReplyHeaderSize;
        }
        else
        {
            return NbdParseStatus.BadMagic;
        }
        if (!SequenceBytes.TryGetPrefix(buffer, size, scratch, out var bytes))
        {
            return NbdParseStatus.NeedMoreData;
        }
        if (size == NbdLimits.SimpleReplyHeaderSize)
        {
            header = new NbdReplyHeader(NbdReplyStyle.Simple,
                (NbdErrno)BinaryPrimitives.ReadUInt32BigEndian(bytes[4..]),
                NbdReplyFlags.Done, NbdReplyType.None,
                BinaryPrimitives.ReadUInt64BigEndian(bytes[8..]), 0, 0);
        }
        else
        {
            var flags = (NbdReplyFlags)BinaryPrimitives.ReadUInt16BigEndian(bytes[4..]);
            var type = (NbdReplyType)BinaryPrimitives.ReadUInt16BigEndian(bytes[6..]);
            var cookie = BinaryPrimitives.ReadUInt64BigEndian(bytes[8..]);
            header = size == NbdLimits.StructuredReplyHeaderSize
                ? new NbdReplyHeader(NbdReplyStyle.Structured, NbdErrno.None, flags, type, cookie, 0,
                    BinaryPrimitives.ReadUInt32BigEndian(bytes[16..]))
                : new NbdReplyHeader(NbdReplyStyle.Extended, NbdErrno.None, flags, type, cookie,
                    BinaryPrimitives.ReadUInt64BigEndian(bytes[16..]),
                    BinaryPrimitives.ReadUInt64BigEndian(bytes[24..]));
        }
        consumed = buffer.GetPosition(size);
        return NbdParseStatus.Complete;
    }
}
