using System.Buffers;
using NbdQcow.Protocol;

namespace NbdQcow.Fuzz;

/// <summary>
/// Every NBD wire parser, on both sides: the first byte picks segment length and header style, the rest is a
/// stream parsed as a server (client flags, options with their payloads, requests) and as a client (greeting,
/// option replies and their payloads, reply headers and chunk payloads). The parsers never throw on bad input:
/// they return Invalid, BadMagic or NeedMoreData, so any exception is a bug.
/// </summary>
public sealed class ProtocolParsersTarget : IFuzzTarget
{
    public string Name => "protocol";

    public string Description => "NBD option/request/reply parsers (server and client side), split across segments";

    public void Run(byte[] input)
    {
        if (input.Length < 1) return;
        int control = input[0];
        int segmentLength = 1 + (control & 0x1f);
        bool extended = (control & 0x20) != 0;
        var data = input.AsMemory(1);
        ParseAsServer(SegmentedSequence.Create(data, segmentLength), extended);
        ParseAsClient(SegmentedSequence.Create(data, segmentLength), extended, noZeroes: (control & 0x40) != 0);
    }

    private static void ParseAsServer(ReadOnlySequence<byte> buffer, bool extended)
    {
        if (NbdServerMessageParser.TryParseClientFlags(buffer, out _, out var consumed) != NbdParseStatus.Complete) return;
        buffer = buffer.Slice(consumed);
        // Options until one fails to parse, then the rest as transmission requests.
        while (NbdServerMessageParser.TryParseOptionHeader(buffer, out var header, out consumed) == NbdParseStatus.Complete)
        {
            buffer = buffer.Slice(consumed);
            if (header.Length > buffer.Length) return;
            var payload = buffer.Slice(0, header.Length).ToArray();
            buffer = buffer.Slice(header.Length);
            Check(NbdOptionPayloadParser.TryParseInfoRequest(payload, out var info), info is not null);
            Check(NbdOptionPayloadParser.TryParseMetaContextRequest(payload, out var meta), meta is not null);
        }
        while (NbdServerMessageParser.TryParseRequest(buffer, extended, out var request, out consumed) == NbdParseStatus.Complete)
        {
            buffer = buffer.Slice(consumed);
            if (request.Command == NbdCommand.Write)
            {
                if (request.Length > (ulong)buffer.Length) return;
                buffer = buffer.Slice((long)request.Length);
            }
        }
    }

    private static void ParseAsClient(ReadOnlySequence<byte> buffer, bool extended, bool noZeroes)
    {
        if (NbdClientMessageParser.TryParseGreeting(buffer, out _, out var consumed) == NbdParseStatus.Complete)
            buffer = buffer.Slice(consumed);
        var exportInfo = new NbdExportInfo();
        while (NbdClientMessageParser.TryParseOptionReplyHeader(buffer, out var header, out consumed) == NbdParseStatus.Complete)
        {
            buffer = buffer.Slice(consumed);
            if (header.Length > buffer.Length) return;
            var payload = buffer.Slice(0, header.Length).ToArray();
            buffer = buffer.Slice(header.Length);
            NbdOptionPayloadParser.TryParseServerReply(payload, out _, out _);
            NbdOptionPayloadParser.TryParseMetaContextReply(payload, out _, out _);
            if (NbdOptionPayloadParser.TryParseInfoReply(payload, exportInfo, out var updated) == NbdParseStatus.Complete)
                exportInfo = updated;
        }
        if (NbdClientMessageParser.TryParseExportNameReply(buffer, noZeroes, out _, out _, out consumed) == NbdParseStatus.Complete)
            buffer = buffer.Slice(consumed);
        var extents = new List<NbdBlockDescriptor>();
        while (NbdClientMessageParser.TryParseReplyHeader(buffer, extended, out var reply, out consumed) == NbdParseStatus.Complete)
        {
            buffer = buffer.Slice(consumed);
            if (reply.Style == NbdReplyStyle.Simple) continue;
            if (reply.Length > (ulong)buffer.Length) return;
            var payload = buffer.Slice(0, (long)reply.Length).ToArray();
            buffer = buffer.Slice((long)reply.Length);
            NbdChunkPayloadParser.TryParseOffsetDataPrefix(payload, out _);
            NbdChunkPayloadParser.TryParseOffsetHole(payload, out _, out _);
            extents.Clear();
            NbdChunkPayloadParser.TryParseBlockStatus(payload, reply.Type, extents, out _);
            NbdChunkPayloadParser.TryParseError(payload, reply.Type, out _, out _, out _);
        }
    }

    private static void Check(NbdParseStatus status, bool hasResult)
    {
        if ((status == NbdParseStatus.Complete) != hasResult)
            throw new InvalidOperationException($"parser returned {status} but {(hasResult ? "a" : "no")} result");
    }
}
