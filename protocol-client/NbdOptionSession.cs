using System.Buffers;
using System.IO.Pipelines;
using System.Net.Security;

namespace NbdQcow.Protocol.Client;

/// <summary>
/// Option haggling one option at a time, for tests and tools that need to see each reply (like libnbd's option
/// mode): send any option with any payload, read its replies up to the final one, upgrade with STARTTLS, or send
/// raw bytes. Ends with ABORT or by disposal; never enters transmission.
/// </summary>
public sealed class NbdOptionSession : IAsyncDisposable
{
    private Stream _stream;
    private PipeReader _reader;
    private PipeWriter _writer;

    private NbdOptionSession(Stream stream)
    {
        _stream = stream;
        (_reader, _writer) = CreatePipes(stream);
    }

    /// <summary>Handshake flags the server offered.</summary>
    public NbdHandshakeFlags ServerFlags { get; private set; }

    public bool IsTls => _stream is SslStream;

    /// <summary>Reads the greeting and answers with FIXED_NEWSTYLE (and NO_ZEROES when offered). Owns the stream.</summary>
    public static async Task<NbdOptionSession> StartAsync(Stream stream, CancellationToken cancellationToken = default)
    {
        var session = new NbdOptionSession(stream);
        try
        {
            while (true)
            {
                var result = await session._reader.ReadAsync(cancellationToken).ConfigureAwait(false);
                var status = NbdClientMessageParser.TryParseGreeting(result.Buffer, out var flags, out var consumed);
                if (status == NbdParseStatus.Complete)
                {
                    session._reader.AdvanceTo(consumed);
                    session.ServerFlags = flags;
                    break;
                }
                if (status == NbdParseStatus.BadMagic || result.IsCompleted)
                {
                    throw new NbdNegotiationException("no fixed newstyle greeting from the server");
                }
                session._reader.AdvanceTo(result.Buffer.Start, result.Buffer.End);
            }
            var clientFlags = NbdClientFlags.FixedNewstyle
                | ((session.ServerFlags & NbdHandshakeFlags.NoZeroes) != 0 ? NbdClientFlags.NoZeroes : 0);
            NbdClientMessageWriter.WriteClientFlags(session._writer, clientFlags);
            await session._writer.FlushAsync(cancellationToken).ConfigureAwait(false);
            return session;
        }
        catch
        {
            await session.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>Sends one option and returns every reply to it, the final one (ACK or an error) last.</summary>
    public async Task<IReadOnlyList<NbdOptionReply>> SendOptionAsync(NbdOption option, ReadOnlyMemory<byte> payload = default, CancellationToken cancellationToken = default)
    {
        NbdClientMessageWriter.WriteOption(_writer, option, payload.Span);
        await _writer.FlushAsync(cancellationToken).ConfigureAwait(false);
        return await ReadRepliesAsync(option, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Writes bytes as they are (several options in one packet, garbage, ...).</summary>
    public async Task SendRawAsync(ReadOnlyMemory<byte> bytes, CancellationToken cancellationToken = default)
    {
        await _writer.WriteAsync(bytes, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Reads the replies to an option sent with <see cref="SendRawAsync"/>.</summary>
    public async Task<IReadOnlyList<NbdOptionReply>> ReadRepliesAsync(NbdOption option, CancellationToken cancellationToken = default)
    {
        var replies = new List<NbdOptionReply>();
        while (true)
        {
            var reply = await ReadReplyAsync(option, cancellationToken).ConfigureAwait(false);
            replies.Add(reply);
            if (reply.Header.Type == NbdOptionReplyType.Ack || reply.Header.IsError)
            {
                return replies;
            }
        }
    }

    /// <summary>
    /// NBD_OPT_STARTTLS; on ACK runs the client handshake and continues over TLS. Returns the reply; a refused
    /// STARTTLS leaves the session in plain text.
    /// </summary>
    public async Task<NbdOptionReply> StartTlsAsync(SslClientAuthenticationOptions tls, CancellationToken cancellationToken = default)
    {
        var replies = await SendOptionAsync(NbdOption.StartTls, default, cancellationToken).ConfigureAwait(false);
        var reply = replies[^1];
        if (reply.Header.Type != NbdOptionReplyType.Ack)
        {
            return reply;
        }
        await _reader.CompleteAsync().ConfigureAwait(false);
        await _writer.CompleteAsync().ConfigureAwait(false);
        var ssl = new SslStream(_stream, leaveInnerStreamOpen: false);
        _stream = ssl;
        (_reader, _writer) = CreatePipes(ssl);
        await ssl.AuthenticateAsClientAsync(tls, cancellationToken).ConfigureAwait(false);
        return reply;
    }

    /// <summary>True when the server closes the connection (end of stream) without sending anything more.</summary>
    public async Task<bool> IsClosedByServerAsync(CancellationToken cancellationToken = default)
    {
        try
        {
            var result = await _reader.ReadAsync(cancellationToken).ConfigureAwait(false);
            var closed = result.IsCompleted && result.Buffer.IsEmpty;
            _reader.AdvanceTo(result.Buffer.Start, result.Buffer.End);
            return closed;
        }
        catch (IOException)
        {
            return true;
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _reader.CompleteAsync().ConfigureAwait(false);
        await _writer.CompleteAsync().ConfigureAwait(false);
        await _stream.DisposeAsync().ConfigureAwait(false);
    }

    private Task<NbdOptionReply> ReadReplyAsync(NbdOption option, CancellationToken cancellationToken) =>
        NbdOptionReplyReader.ReadAsync(_reader, option, cancellationToken);

    private static (PipeReader Reader, PipeWriter Writer) CreatePipes(Stream stream) =>
        (PipeReader.Create(stream, new StreamPipeReaderOptions(leaveOpen: true)),
         PipeWriter.Create(stream, new StreamPipeWriterOptions(leaveOpen: true)));
}
