using System.Buffers.Binary;
using System.Text;

namespace NbdQcow.Protocol;

/// <summary>
/// Parses complete option payloads (client requests and server replies). Negotiation happens once per
/// connection, so these may allocate the strings they return.
/// </summary>
public static class NbdOptionPayloadParser
{
    /// <summary>NBD_OPT_INFO / NBD_OPT_GO: 32-bit name length, name, 16-bit count, count x 16-bit info type.</summary>
    public static NbdParseStatus TryParseInfoRequest(ReadOnlySpan<byte> payload, out NbdInfoRequest? request)
    {
        request = null;
        if (!TryReadString32(ref payload, out var name) || payload.Length < 2)
        {
            return NbdParseStatus.Invalid;
        }
        int count = BinaryPrimitives.ReadUInt16BigEndian(payload);
        payload = payload[2..];
        if (payload.Length != count * 2)
        {
            return NbdParseStatus.Invalid;
        }
        var items = new NbdInfoType[count];
        for (var i = 0; i < count; i++)
        {
            items[i] = (NbdInfoType)BinaryPrimitives.ReadUInt16BigEndian(payload[(i * 2)..]);
        }
        request = new NbdInfoRequest(name, items);
        return NbdParseStatus.Complete;
    }

    /// <summary>LIST/SET_META_CONTEXT: 32-bit name length, name, 32-bit query count, each a 32-bit length + query.</summary>
    public static NbdParseStatus TryParseMetaContextRequest(ReadOnlySpan<byte> payload, out NbdMetaContextRequest? request)
    {
        request = null;
        if (!TryReadString32(ref payload, out var name) || payload.Length < 4)
        {
            return NbdParseStatus.Invalid;
        }
        var count = BinaryPrimitives.ReadUInt32BigEndian(payload);
        payload = payload[4..];
        // Each query needs at least its 4-byte length: bounds the list before allocating it.
        if (count > (uint)payload.Length / 4)
        {
            return NbdParseStatus.Invalid;
        }
        var queries = new string[count];
        for (var i = 0; i < queries.Length; i++)
        {
            if (!TryReadString32(ref payload, out queries[i]))
            {
                return NbdParseStatus.Invalid;
            }
        }
        if (!payload.IsEmpty)
        {
            return NbdParseStatus.Invalid;
        }
        request = new NbdMetaContextRequest(name, queries);
        return NbdParseStatus.Complete;
    }

    /// <summary>NBD_REP_SERVER: 32-bit name length, name, then free-form description to the end.</summary>
    public static NbdParseStatus TryParseServerReply(ReadOnlySpan<byte> payload, out string name, out string description)
    {
        description = "";
        if (!TryReadString32(ref payload, out name))
        {
            return NbdParseStatus.Invalid;
        }
        description = Encoding.UTF8.GetString(payload);
        return NbdParseStatus.Complete;
    }

    /// <summary>NBD_REP_META_CONTEXT: 32-bit context id, then the context name to the end.</summary>
    public static NbdParseStatus TryParseMetaContextReply(ReadOnlySpan<byte> payload, out uint contextId, out string name)
    {
        contextId = 0;
        name = "";
        if (payload.Length < 4 || payload.Length - 4 > NbdLimits.MaxString)
        {
            return NbdParseStatus.Invalid;
        }
        contextId = BinaryPrimitives.ReadUInt32BigEndian(payload);
        name = Encoding.UTF8.GetString(payload[4..]);
        return NbdParseStatus.Complete;
    }

    /// <summary>
    /// NBD_REP_INFO: 16-bit info type, then its fields. Returns <paramref name="info"/> updated with what the
    /// item says; unknown info types leave it unchanged (clients must ignore them).
    /// </summary>
    public static NbdParseStatus TryParseInfoReply(ReadOnlySpan<byte> payload, NbdExportInfo current, out NbdExportInfo info)
    {
        info = current;
        if (payload.Length < 2)
        {
            return NbdParseStatus.Invalid;
        }
        var type = (NbdInfoType)BinaryPrimitives.ReadUInt16BigEndian(payload);
        var body = payload[2..];
        switch (type)
        {
            case NbdInfoType.Export:
                if (body.Length != 10)
                {
                    return NbdParseStatus.Invalid;
                }
                info = current with
                {
                    Size = BinaryPrimitives.ReadUInt64BigEndian(body),
                    Flags = (NbdTransmissionFlags)BinaryPrimitives.ReadUInt16BigEndian(body[8..]),
                };
                return NbdParseStatus.Complete;
            case NbdInfoType.Name:
                info = current with { Name = Encoding.UTF8.GetString(body) };
                return NbdParseStatus.Complete;
            case NbdInfoType.Description:
                info = current with { Description = Encoding.UTF8.GetString(body) };
                return NbdParseStatus.Complete;
            case NbdInfoType.BlockSize:
                if (body.Length != 12)
                {
                    return NbdParseStatus.Invalid;
                }
                info = current with
                {
                    MinimumBlockSize = BinaryPrimitives.ReadUInt32BigEndian(body),
                    PreferredBlockSize = BinaryPrimitives.ReadUInt32BigEndian(body[4..]),
                    MaximumBlockSize = BinaryPrimitives.ReadUInt32BigEndian(body[8..]),
                };
                return NbdParseStatus.Complete;
            default:
                return NbdParseStatus.Complete;
        }
    }

    private static bool TryReadString32(ref ReadOnlySpan<byte> payload, out string value)
    {
        value = "";
        if (payload.Length < 4)
        {
            return false;
        }
        var length = BinaryPrimitives.ReadUInt32BigEndian(payload);
        if (length > NbdLimits.MaxString || length > (uint)(payload.Length - 4))
        {
            return false;
        }
        value = Encoding.UTF8.GetString(payload.Slice(4, (int)length));
        payload = payload[(4 + (int)length)..];
        return true;
    }
}
