using System.Buffers;
using System.Buffers.Binary;

namespace NbdQcow.Protocol;

/// <summary>Writes what a client sends: client flags, options and requests.</summary>
public static class NbdClientMessageWriter
{
    public static void WriteClientFlags(IBufferWriter<byte> writer, NbdClientFlags flags)
        => NbdServerMessageWriter.WriteUInt32(writer, (uint)flags);

    public static void WriteOptionHeader(IBufferWriter<byte> writer, NbdOption option, uint length)
    {
        var span = writer.GetSpan(NbdLimits.OptionHeaderSize);
        BinaryPrimitives.WriteUInt64BigEndian(span, NbdMagic.IHaveOpt);
        BinaryPrimitives.WriteUInt32BigEndian(span[8..], (uint)option);
        BinaryPrimitives.WriteUInt32BigEndian(span[12..], length);
        writer.Advance(NbdLimits.OptionHeaderSize);
    }

    /// <summary>An option with a raw payload (EXPORT_NAME carries the bare name; most others are empty).</summary>
    public static void WriteOption(IBufferWriter<byte> writer, NbdOption option, ReadOnlySpan<byte> payload)
    {
        WriteOptionHeader(writer, option, (uint)payload.Length);
        writer.Write(payload);
    }

    /// <summary>NBD_OPT_EXPORT_NAME: the payload is the name itself, no length prefix.</summary>
    public static void WriteExportNameOption(IBufferWriter<byte> writer, string name)
    {
        var length = NbdServerMessageWriter.Utf8Length(name);
        WriteOptionHeader(writer, NbdOption.ExportName, (uint)length);
        NbdServerMessageWriter.WriteUtf8(writer, name, length);
    }

    /// <summary>NBD_OPT_INFO or NBD_OPT_GO.</summary>
    public static void WriteInfoOption(IBufferWriter<byte> writer, NbdOption option, string exportName, ReadOnlySpan<NbdInfoType> requests)
    {
        var nameLength = NbdServerMessageWriter.Utf8Length(exportName);
        WriteOptionHeader(writer, option, (uint)(4 + nameLength + 2 + requests.Length * 2));
        NbdServerMessageWriter.WriteUInt32(writer, (uint)nameLength);
        NbdServerMessageWriter.WriteUtf8(writer, exportName, nameLength);
        NbdServerMessageWriter.WriteUInt16(writer, (ushort)requests.Length);
        foreach (var request in requests)
        {
            NbdServerMessageWriter.WriteUInt16(writer, (ushort)request);
        }
    }

    /// <summary>NBD_OPT_LIST_META_CONTEXT or NBD_OPT_SET_META_CONTEXT.</summary>
    public static void WriteMetaContextOption(IBufferWriter<byte> writer, NbdOption option, string exportName, IReadOnlyList<string> queries)
    {
        var nameLength = NbdServerMessageWriter.Utf8Length(exportName);
        var total = 4 + nameLength + 4;
        for (var i = 0; i < queries.Count; i++)
        {
            total += 4 + NbdServerMessageWriter.Utf8Length(queries[i]);
        }
        WriteOptionHeader(writer, option, (uint)total);
        NbdServerMessageWriter.WriteUInt32(writer, (uint)nameLength);
        NbdServerMessageWriter.WriteUtf8(writer, exportName, nameLength);
        NbdServerMessageWriter.WriteUInt32(writer, (uint)queries.Count);
        for (var i = 0; i < queries.Count; i++)
        {
            var length = NbdServerMessageWriter.Utf8Length(queries[i]);
            NbdServerMessageWriter.WriteUInt32(writer, (uint)length);
            NbdServerMessageWriter.WriteUtf8(writer, queries[i], length);
        }
    }

    /// <summary>A request header: 28 bytes compact (length must fit 32 bits) or 32 bytes extended.</summary>
    public static void WriteRequest(IBufferWriter<byte> writer, bool extendedHeaders, in NbdRequest request)
    {
        var size = extendedHeaders ? NbdLimits.ExtendedRequestHeaderSize : NbdLimits.RequestHeaderSize;
        var span = writer.GetSpan(size);
        BinaryPrimitives.WriteUInt32BigEndian(span, extendedHeaders ? NbdMagic.ExtendedRequest : NbdMagic.Request);
        BinaryPrimitives.WriteUInt16BigEndian(span[4..], (ushort)request.Flags);
        BinaryPrimitives.WriteUInt16BigEndian(span[6..], (ushort)request.Command);
        BinaryPrimitives.WriteUInt64BigEndian(span[8..], request.Cookie);
        BinaryPrimitives.WriteUInt64BigEndian(span[16..], request.Offset);
        if (extendedHeaders)
        {
            BinaryPrimitives.WriteUInt64BigEndian(span[24..], request.Length);
        }
        else
        {
            if (request.Length > uint.MaxValue)
            {
                throw new ArgumentOutOfRangeException(nameof(request), "compact requests carry at most 4 GiB - 1; negotiate extended headers");
            }
            BinaryPrimitives.WriteUInt32BigEndian(span[24..], (uint)request.Length);
        }
        writer.Advance(size);
    }
}
