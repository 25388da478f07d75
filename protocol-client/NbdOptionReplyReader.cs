using System.Buffers;
using System.IO.Pipelines;

namespace NbdQcow.Protocol.Client;

/// <summary>Reads one option reply (header and whole payload) during negotiation, checking it answers the option asked.</summary>
internal static class NbdOptionReplyReader
{
    public static async Task<NbdOptionReply> ReadAsync(PipeReader reader, NbdOption option, CancellationToken cancellationToken)
    {
        NbdOptionReplyHeader header;
        while (true)
        {
            var result = await reader.ReadAsync(cancellationToken).ConfigureAwait(false);
            var status = NbdClientMessageParser.TryParseOptionReplyHeader(result.Buffer, out header, out var consumed);
            if (status == NbdParseStatus.Complete)
            {
                reader.AdvanceTo(consumed);
                break;
            }
            if (status == NbdParseStatus.BadMagic)
            {
                throw new NbdNegotiationException("bad option reply magic");
            }
            if (result.IsCompleted)
            {
                throw new NbdNegotiationException($"server closed the connection while answering {option}");
            }
            reader.AdvanceTo(result.Buffer.Start, result.Buffer.End);
        }
        if (header.Option != option)
        {
            throw new NbdNegotiationException($"reply for option {header.Option} while waiting for {option}");
        }
        if (header.Length > NbdLimits.MaxOptionPayload)
        {
            throw new NbdNegotiationException($"option reply of {header.Length} bytes is too large");
        }
        var payload = new byte[header.Length];
        var filled = 0;
        while (filled < payload.Length)
        {
            var result = await reader.ReadAsync(cancellationToken).ConfigureAwait(false);
            var take = (int)Math.Min(result.Buffer.Length, payload.Length - filled);
            result.Buffer.Slice(0, take).CopyTo(payload.AsSpan(filled));
            filled += take;
            reader.AdvanceTo(result.Buffer.GetPosition(take));
            if (take == 0 && result.IsCompleted)
            {
                throw new NbdNegotiationException($"server closed the connection mid-reply to {option}");
            }
        }
        return new NbdOptionReply(header, payload);
    }
}
