using System.Buffers;
using System.Buffers.Binary;

namespace NbdQcow.Protocol;

/// <summary>
/// Parses what a server receives: client flags, option headers and transmission requests.
/// Allocation-free; each call either consumes one whole message or reports how it cannot.
/// </summary>
public static class NbdServerMessageParser
{
    public static NbdParseStatus TryParseClientFlags(in ReadOnlySequence<byte> buffer, out NbdClientFlags flags, out SequencePosition consumed)
    {
        Span<byte> scratch = stackalloc byte[4];
        if (!SequenceBytes.TryGetPrefix(buffer, 4, scratch, out var bytes))
        {
            flags = default;
            consumed = buffer.Start;
            return NbdParseStatus.NeedMoreData;
        }
        flags = (NbdClientFlags)BinaryPrimitives.ReadUInt32BigEndian(bytes);
        consumed = buffer.GetPosition(4);
        return NbdParseStatus.Complete;
    }

    /// <summary>Parses IHAVEOPT + option + length; the payload is not consumed.</summary>
    public static NbdParseStatus TryParseOptionHeader(in ReadOnlySequence<byte> buffer, out NbdOptionHeader header, out SequencePosition consumed)
    {
        Span<byte> scratch = stackalloc byte[NbdLimits.OptionHeaderSize];
        header = default;
        consumed = buffer.Start;
        if (!SequenceBytes.TryGetPrefix(buffer, NbdLimits.OptionHeaderSize, scratch, out var bytes))
        {
            return NbdParseStatus.NeedMoreData;
        }
        if (BinaryPrimitives.ReadUInt64BigEndian(bytes) != NbdMagic.IHaveOpt)
        {
            return NbdParseStatus.BadMagic;
        }
        header = new NbdOptionHeader(
            (NbdOption)BinaryPrimitives.ReadUInt32BigEndian(bytes[8..]),
            BinaryPrimitives.ReadUInt32BigEndian(bytes[12..]));
        consumed = buffer.GetPosition(NbdLimits.OptionHeaderSize);
        return NbdParseStatus.Complete;
    }

    /// <summary>
    /// Parses one request header (28 bytes compact, 32 bytes with extended headers). A WRITE's payload
    /// follows and is not consumed here.
    /// </summary>
    public static NbdParseStatus TryParseRequest(in ReadOnlySequence<byte> buffer, bool extendedHeaders, out NbdRequest request, out SequencePosition consumed)
    {
        var size = extendedHeaders ? NbdLimits.ExtendedRequestHeaderSize : NbdLimits.RequestHeaderSize;
        Span<byte> scratch = stackalloc byte[NbdLimits.ExtendedRequestHeaderSize];
        request = default;
        consumed = buffer.Start;
        if (!SequenceBytes.TryGetPrefix(buffer, size, scratch, out var bytes))
        {
            return NbdParseStatus.NeedMoreData;
        }
        var magic = BinaryPrimitives.ReadUInt32BigEndian(bytes);
        if (magic != (extendedHeaders ? NbdMagic.ExtendedRequest : NbdMagic.Request))
        {
            return NbdParseStatus.BadMagic;
        }
        var flags = (NbdCommandFlags)BinaryPrimitives.ReadUInt16BigEndian(bytes[4..]);
        var command = (NbdCommand)BinaryPrimitives.ReadUInt16BigEndian(bytes[6..]);
        var cookie = BinaryPrimitives.ReadUInt64BigEndian(bytes[8..]);
        var offset = BinaryPrimitives.ReadUInt64BigEndian(bytes[16..]);
        ulong length = extendedHeaders
            ? BinaryPrimitives.ReadUInt64BigEndian(bytes[24..])
            : BinaryPrimitives.ReadUInt32BigEndian(bytes[24..]);
        request = new NbdRequest(flags, command, cookie, offset, length);
        consumed = buffer.GetPosition(size);
        return NbdParseStatus.Complete;
    }
}
