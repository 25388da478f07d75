using System.Buffers;
using System.Collections.Concurrent;
using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace NbdQcow.Protocol.Client;

/// <summary>
/// A small asynchronous NBD client (fixed newstyle) for tests, the bench command and tools: negotiates
/// structured replies / extended headers / base:allocation, then issues requests with many in flight,
/// matching out-of-order replies by cookie. Thread-safe for concurrent requests.
/// </summary>
public sealed class NbdClient : IAsyncDisposable
{
    // Not readonly: NBD_OPT_STARTTLS replaces them with an SslStream and pipes over it.
    private Stream _stream;
    private PipeReader _reader;
    private PipeWriter _writer;
    private readonly SemaphoreSlim _sendLock = new(1, 1);
    private readonly ConcurrentDictionary<ulong, PendingRequest> _pending = new();
    private Task? _receiveLoop;
    private long _nextCookie;
    private volatile Exception? _failure;
    private bool _extended;

    private NbdClient(Stream stream)
    {
        _stream = stream;
        (_reader, _writer) = CreatePipes(stream);
    }

    private static (PipeReader Reader, PipeWriter Writer) CreatePipes(Stream stream) =>
        (PipeReader.Create(stream, new StreamPipeReaderOptions(bufferSize: 256 * 1024, minimumReadSize: 64 * 1024, leaveOpen: true)),
         PipeWriter.Create(stream, new StreamPipeWriterOptions(minimumBufferSize: 64 * 1024, leaveOpen: true)));

    /// <summary>The TLS protocol in use ("Tls13"), or null for a plain connection.</summary>
    public System.Security.Authentication.SslProtocols? TlsProtocol => (_stream as System.Net.Security.SslStream)?.SslProtocol;

    public NbdExportInfo Export { get; private set; } = new();

    public NbdReplyStyle ReplyStyle { get; private set; } = NbdReplyStyle.Simple;

    /// <summary>Context id of base:allocation when the server agreed to it, else null.</summary>
    public uint? BaseAllocationContextId { get; private set; }

    /// <summary>Handshake flags the server offered.</summary>
    public NbdHandshakeFlags ServerFlags { get; private set; }

    public static async Task<Stream> OpenTcpStreamAsync(string host, int port, CancellationToken cancellationToken = default)
    {
        var address = IPAddress.TryParse(host, out var ip) ? ip : (await Dns.GetHostAddressesAsync(host, cancellationToken).ConfigureAwait(false))[0];
        var socket = new Socket(address.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        try
        {
            await socket.ConnectAsync(new IPEndPoint(address, port), cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
        return new NetworkStream(socket, ownsSocket: true);
    }

    public static async Task<Stream> OpenUnixStreamAsync(string path, CancellationToken cancellationToken = default)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            await socket.ConnectAsync(new UnixDomainSocketEndPoint(path), cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
        return new NetworkStream(socket, ownsSocket: true);
    }

    public static async Task<NbdClient> ConnectTcpAsync(string host, int port, NbdClientOptions options, CancellationToken cancellationToken = default)
        => await ConnectAsync(await OpenTcpStreamAsync(host, port, cancellationToken).ConfigureAwait(false), options, cancellationToken).ConfigureAwait(false);

    public static async Task<NbdClient> ConnectUnixAsync(string path, NbdClientOptions options, CancellationToken cancellationToken = default)
        => await ConnectAsync(await OpenUnixStreamAsync(path, cancellationToken).ConfigureAwait(false), options, cancellationToken).ConfigureAwait(false);

    /// <summary>Negotiates over <paramref name="stream"/> (which the client then owns) and starts transmission.</summary>
    public static async Task<NbdClient> ConnectAsync(Stream stream, NbdClientOptions options, CancellationToken cancellationToken = default)
    {
        var client = new NbdClient(stream);
        try
        {
            await client.NegotiateAsync(options, cancellationToken).ConfigureAwait(false);
            client._receiveLoop = Task.Run(client.ReceiveLoopAsync, CancellationToken.None);
            return client;
        }
        catch
        {
            await client.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>Connects, sends NBD_OPT_LIST, then NBD_OPT_ABORT; disposes the stream.</summary>
    public static async Task<IReadOnlyList<NbdExportListing>> ListExportsAsync(Stream stream, CancellationToken cancellationToken = default)
    {
        var client = new NbdClient(stream);
        try
        {
            await client.GreetAsync(cancellationToken).ConfigureAwait(false);
            NbdClientMessageWriter.WriteOption(client._writer, NbdOption.List, default);
            await client._writer.FlushAsync(cancellationToken).ConfigureAwait(false);
            var exports = new List<NbdExportListing>();
            while (true)
            {
                var (header, payload) = await client.ReadOptionReplyAsync(NbdOption.List, cancellationToken).ConfigureAwait(false);
                if (header.Type == NbdOptionReplyType.Ack)
                {
                    break;
                }
                if (header.Type != NbdOptionReplyType.Server
                    || NbdOptionPayloadParser.TryParseServerReply(payload, out var name, out var description) != NbdParseStatus.Complete)
                {
                    throw new NbdNegotiationException($"unexpected reply {header.Type} to NBD_OPT_LIST");
                }
                exports.Add(new NbdExportListing(name, description));
            }
            await client.AbortAsync(cancellationToken).ConfigureAwait(false);
            return exports;
        }
        finally
        {
            await client.DisposeAsync().ConfigureAwait(false);
        }
    }

    public Task ReadAsync(ulong offset, Memory<byte> buffer, NbdCommandFlags flags = NbdCommandFlags.None, CancellationToken cancellationToken = default)
        => SendAsync(new PendingRequest(NbdCommand.Read, offset) { ReadBuffer = buffer }, flags, (ulong)buffer.Length, default, cancellationToken);

    public Task WriteAsync(ulong offset, ReadOnlyMemory<byte> data, NbdCommandFlags flags = NbdCommandFlags.None, CancellationToken cancellationToken = default)
        => SendAsync(new PendingRequest(NbdCommand.Write, offset), flags, (ulong)data.Length, data, cancellationToken);

    public Task FlushAsync(CancellationToken cancellationToken = default)
        => SendAsync(new PendingRequest(NbdCommand.Flush, 0), NbdCommandFlags.None, 0, default, cancellationToken);

    public Task TrimAsync(ulong offset, ulong length, NbdCommandFlags flags = NbdCommandFlags.None, CancellationToken cancellationToken = default)
        => SendAsync(new PendingRequest(NbdCommand.Trim, offset), flags, length, default, cancellationToken);

    public Task WriteZeroesAsync(ulong offset, ulong length, NbdCommandFlags flags = NbdCommandFlags.None, CancellationToken cancellationToken = default)
        => SendAsync(new PendingRequest(NbdCommand.WriteZeroes, offset), flags, length, default, cancellationToken);

    public Task CacheAsync(ulong offset, ulong length, CancellationToken cancellationToken = default)
        => SendAsync(new PendingRequest(NbdCommand.Cache, offset), NbdCommandFlags.None, length, default, cancellationToken);

    /// <summary>Sends a request of any type (also invalid ones, for tests of the server's error paths).</summary>
    public Task SendRawAsync(NbdCommand command, NbdCommandFlags flags, ulong offset, ulong length, ReadOnlyMemory<byte> payload = default, CancellationToken cancellationToken = default)
        => SendAsync(new PendingRequest(command, offset), flags, length, payload, cancellationToken);

    /// <summary>NBD_CMD_BLOCK_STATUS for base:allocation; returns the extents of the (first) context's chunk.</summary>
    public async Task<IReadOnlyList<NbdBlockDescriptor>> BlockStatusAsync(ulong offset, ulong length, NbdCommandFlags flags = NbdCommandFlags.None, CancellationToken cancellationToken = default)
    {
        var pending = new PendingRequest(NbdCommand.BlockStatus, offset) { Extents = new List<NbdBlockDescriptor>() };
        await SendAsync(pending, flags, length, default, cancellationToken).ConfigureAwait(false);
        return pending.Extents;
    }

    /// <summary>NBD_CMD_DISC: no reply; the server closes after finishing what is in flight.</summary>
    public async Task DisconnectAsync(CancellationToken cancellationToken = default)
    {
        await _sendLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            NbdClientMessageWriter.WriteRequest(_writer, _extended, new NbdRequest(NbdCommandFlags.None, NbdCommand.Disconnect, 0, 0, 0));
            await _writer.FlushAsync(cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _sendLock.Release();
        }
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            _stream.Dispose();
        }
        catch (IOException)
        {
        }
        if (_receiveLoop is not null)
        {
            try
            {
                await _receiveLoop.ConfigureAwait(false);
            }
            catch (Exception)
            {
                // the loop records its failure in _failure; nothing else to do at disposal
            }
        }
        var disposed = new ObjectDisposedException(nameof(NbdClient));
        _failure ??= disposed;
        FailAll(disposed);
        _sendLock.Dispose();
    }

    private async Task SendAsync(PendingRequest pending, NbdCommandFlags flags, ulong length, ReadOnlyMemory<byte> payload, CancellationToken cancellationToken)
    {
        if (_failure is { } failure)
        {
            throw new IOException("connection failed: " + failure.Message, failure);
        }
        var cookie = (ulong)Interlocked.Increment(ref _nextCookie);
        _pending[cookie] = pending;
        // The receive loop may have ended (and failed everything pending) between the check above and now: a
        // request registered after that would never get a reply, since writing into a socket the peer closed
        // can still succeed.
        if (_failure is { } late && _pending.TryRemove(cookie, out _))
        {
            throw new IOException("connection failed: " + late.Message, late);
        }
        await _sendLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            NbdClientMessageWriter.WriteRequest(_writer, _extended, new NbdRequest(flags, pending.Command, cookie, pending.Offset, length));
            if (!payload.IsEmpty)
            {
                _writer.Write(payload.Span);
            }
            await _writer.FlushAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (Exception ex)
        {
            _pending.TryRemove(cookie, out _);
            pending.Completion.TrySetException(ex);
        }
        finally
        {
            _sendLock.Release();
        }
        await pending.Completion.Task.ConfigureAwait(false);
    }

    private async Task ReceiveLoopAsync()
    {
        try
        {
            while (true)
            {
                var header = await ReadReplyHeaderAsync().ConfigureAwait(false);
                if (header is null)
                {
                    var closed = new EndOfStreamException("server closed the connection");
                    _failure = closed;
                    FailAll(closed);
                    return;
                }
                await HandleReplyAsync(header.Value).ConfigureAwait(false);
            }
        }
        catch (Exception ex)
        {
            _failure = ex;
            FailAll(ex);
        }
    }

    private async Task<NbdReplyHeader?> ReadReplyHeaderAsync()
    {
        while (true)
        {
            var result = await _reader.ReadAsync().ConfigureAwait(false);
            var buffer = result.Buffer;
            var status = NbdClientMessageParser.TryParseReplyHeader(buffer, _extended, out var header, out var consumed);
            if (status == NbdParseStatus.Complete)
            {
                _reader.AdvanceTo(consumed);
                return header;
            }
            if (status != NbdParseStatus.NeedMoreData)
            {
                throw new InvalidDataException("bad reply magic from server");
            }
            if (result.IsCompleted)
            {
                _reader.AdvanceTo(buffer.Start, buffer.End);
                return null;
            }
            _reader.AdvanceTo(buffer.Start, buffer.End);
        }
    }

    private async Task HandleReplyAsync(NbdReplyHeader header)
    {
        if (!_pending.TryGetValue(header.Cookie, out var pending))
        {
            throw new InvalidDataException($"reply for unknown cookie {header.Cookie}");
        }
        if (header.Style == NbdReplyStyle.Simple)
        {
            if (header.Error == NbdErrno.None && pending.Command == NbdCommand.Read && !pending.ReadBuffer.IsEmpty)
            {
                await ReadExactlyAsync(pending.ReadBuffer).ConfigureAwait(false);
            }
            pending.Error = header.Error;
            Complete(header.Cookie, pending);
            return;
        }
        if (header.Length > NbdLimits.MaxPayload + 64L * 1024)
        {
            throw new InvalidDataException($"reply chunk of {header.Length} bytes is larger than any request");
        }
        var length = (int)header.Length;
        switch (header.Type)
        {
            case NbdReplyType.OffsetData:
                {
                    var prefix = new byte[8];
                    await ReadExactlyAsync(prefix).ConfigureAwait(false);
                    NbdChunkPayloadParser.TryParseOffsetDataPrefix(prefix, out var dataOffset);
                    var dataLength = length - 8;
                    var at = (long)(dataOffset - pending.Offset);
                    if (dataLength < 0 || at < 0 || at + dataLength > pending.ReadBuffer.Length)
                    {
                        throw new InvalidDataException("OFFSET_DATA chunk outside the requested range");
                    }
                    await ReadExactlyAsync(pending.ReadBuffer.Slice((int)at, dataLength)).ConfigureAwait(false);
                    break;
                }
            case NbdReplyType.OffsetHole:
                {
                    var payload = await ReadPayloadAsync(length).ConfigureAwait(false);
                    if (NbdChunkPayloadParser.TryParseOffsetHole(payload, out var holeOffset, out var holeLength) != NbdParseStatus.Complete)
                    {
                        throw new InvalidDataException("malformed OFFSET_HOLE chunk");
                    }
                    var at = (long)(holeOffset - pending.Offset);
                    if (at < 0 || at + holeLength > pending.ReadBuffer.Length)
                    {
                        throw new InvalidDataException("OFFSET_HOLE chunk outside the requested range");
                    }
                    pending.ReadBuffer.Span.Slice((int)at, (int)holeLength).Clear();
                    break;
                }
            case NbdReplyType.BlockStatus:
            case NbdReplyType.BlockStatusExtended:
                {
                    var payload = await ReadPayloadAsync(length).ConfigureAwait(false);
                    var extents = new List<NbdBlockDescriptor>();
                    if (NbdChunkPayloadParser.TryParseBlockStatus(payload, header.Type, extents, out var contextId) != NbdParseStatus.Complete)
                    {
                        throw new InvalidDataException("malformed BLOCK_STATUS chunk");
                    }
                    if (pending.Extents is not null && contextId == BaseAllocationContextId)
                    {
                        pending.Extents.AddRange(extents);
                    }
                    break;
                }
            case NbdReplyType.Error:
            case NbdReplyType.ErrorOffset:
                {
                    var payload = await ReadPayloadAsync(length).ConfigureAwait(false);
                    if (NbdChunkPayloadParser.TryParseError(payload, header.Type, out var error, out var message, out _) != NbdParseStatus.Complete)
                    {
                        throw new InvalidDataException("malformed ERROR chunk");
                    }
                    pending.Error = error;
                    pending.Message = message;
                    break;
                }
            default:
                await ReadPayloadAsync(length).ConfigureAwait(false);
                break;
        }
        if (header.IsDone)
        {
            Complete(header.Cookie, pending);
        }
    }

    private void Complete(ulong cookie, PendingRequest pending)
    {
        _pending.TryRemove(cookie, out _);
        if (pending.Error == NbdErrno.None)
        {
            pending.Completion.TrySetResult();
        }
        else
        {
            pending.Completion.TrySetException(new NbdException(pending.Error,
                $"{pending.Command} at {pending.Offset} failed: {pending.Error}{(pending.Message is { Length: > 0 } m ? " (" + m + ")" : "")}"));
        }
    }

    private void FailAll(Exception ex)
    {
        foreach (var (cookie, pending) in _pending)
        {
            if (_pending.TryRemove(cookie, out _))
            {
                pending.Completion.TrySetException(new IOException("connection lost: " + ex.Message, ex));
            }
        }
    }

    private async Task NegotiateAsync(NbdClientOptions options, CancellationToken cancellationToken)
    {
        var noZeroes = await GreetAsync(cancellationToken).ConfigureAwait(false);
        if (options.Tls is { } tls)
        {
            await StartTlsAsync(tls, cancellationToken).ConfigureAwait(false);
        }
        if (options.UseExportNameOption)
        {
            NbdClientMessageWriter.WriteExportNameOption(_writer, options.ExportName);
            await _writer.FlushAsync(cancellationToken).ConfigureAwait(false);
            while (true)
            {
                var result = await _reader.ReadAsync(cancellationToken).ConfigureAwait(false);
                var status = NbdClientMessageParser.TryParseExportNameReply(result.Buffer, noZeroes, out var size, out var flags, out var consumed);
                if (status == NbdParseStatus.Complete)
                {
                    _reader.AdvanceTo(consumed);
                    Export = new NbdExportInfo { Name = options.ExportName, Size = size, Flags = flags };
                    return;
                }
                if (result.IsCompleted)
                {
                    throw new NbdNegotiationException($"server closed the connection after NBD_OPT_EXPORT_NAME '{options.ExportName}' (unknown export?)");
                }
                _reader.AdvanceTo(result.Buffer.Start, result.Buffer.End);
            }
        }

        if (options.ExtendedHeaders && await TrySimpleOptionAsync(NbdOption.ExtendedHeaders, cancellationToken).ConfigureAwait(false))
        {
            ReplyStyle = NbdReplyStyle.Extended;
        }
        else if (options.StructuredReplies && await TrySimpleOptionAsync(NbdOption.StructuredReply, cancellationToken).ConfigureAwait(false))
        {
            ReplyStyle = NbdReplyStyle.Structured;
        }

        if (options.BaseAllocation && ReplyStyle != NbdReplyStyle.Simple)
        {
            NbdClientMessageWriter.WriteMetaContextOption(_writer, NbdOption.SetMetaContext, options.ExportName, [NbdLimits.BaseAllocation]);
            await _writer.FlushAsync(cancellationToken).ConfigureAwait(false);
            while (true)
            {
                var (header, payload) = await ReadOptionReplyAsync(NbdOption.SetMetaContext, cancellationToken).ConfigureAwait(false);
                if (header.Type == NbdOptionReplyType.MetaContext
                    && NbdOptionPayloadParser.TryParseMetaContextReply(payload, out var id, out var name) == NbdParseStatus.Complete
                    && name == NbdLimits.BaseAllocation)
                {
                    BaseAllocationContextId = id;
                    continue;
                }
                if (header.Type == NbdOptionReplyType.Ack || header.IsError)
                {
                    break;
                }
            }
        }

        NbdClientMessageWriter.WriteInfoOption(_writer, NbdOption.Go, options.ExportName,
            [NbdInfoType.Name, NbdInfoType.Description, NbdInfoType.BlockSize]);
        await _writer.FlushAsync(cancellationToken).ConfigureAwait(false);
        var info = new NbdExportInfo { Name = options.ExportName };
        while (true)
        {
            var (header, payload) = await ReadOptionReplyAsync(NbdOption.Go, cancellationToken).ConfigureAwait(false);
            if (header.IsError)
            {
                throw new NbdNegotiationException($"server refused export '{options.ExportName}': {header.Type} {Encoding.UTF8.GetString(payload)}", header.Type);
            }
            if (header.Type == NbdOptionReplyType.Ack)
            {
                break;
            }
            if (header.Type == NbdOptionReplyType.Info
                && NbdOptionPayloadParser.TryParseInfoReply(payload, info, out var updated) == NbdParseStatus.Complete)
            {
                info = updated;
            }
        }
        Export = info;
        _extended = ReplyStyle == NbdReplyStyle.Extended;
    }

    /// <summary>Reads the greeting and sends client flags; returns whether NO_ZEROES was agreed.</summary>
    private async Task<bool> GreetAsync(CancellationToken cancellationToken)
    {
        while (true)
        {
            var result = await _reader.ReadAsync(cancellationToken).ConfigureAwait(false);
            var status = NbdClientMessageParser.TryParseGreeting(result.Buffer, out var flags, out var consumed);
            if (status == NbdParseStatus.Complete)
            {
                _reader.AdvanceTo(consumed);
                ServerFlags = flags;
                break;
            }
            if (status == NbdParseStatus.BadMagic)
            {
                throw new NbdNegotiationException("not a fixed newstyle NBD server (bad greeting magic)");
            }
            if (result.IsCompleted)
            {
                throw new NbdNegotiationException("server closed the connection during the greeting");
            }
            _reader.AdvanceTo(result.Buffer.Start, result.Buffer.End);
        }
        var noZeroes = (ServerFlags & NbdHandshakeFlags.NoZeroes) != 0;
        var clientFlags = NbdClientFlags.FixedNewstyle | (noZeroes ? NbdClientFlags.NoZeroes : 0);
        NbdClientMessageWriter.WriteClientFlags(_writer, clientFlags);
        await _writer.FlushAsync(cancellationToken).ConfigureAwait(false);
        return noZeroes;
    }

    /// <summary>NBD_OPT_STARTTLS, then the TLS handshake; later options and requests go over TLS.</summary>
    private async Task StartTlsAsync(System.Net.Security.SslClientAuthenticationOptions tls, CancellationToken cancellationToken)
    {
        NbdClientMessageWriter.WriteOption(_writer, NbdOption.StartTls, default);
        await _writer.FlushAsync(cancellationToken).ConfigureAwait(false);
        var (header, payload) = await ReadOptionReplyAsync(NbdOption.StartTls, cancellationToken).ConfigureAwait(false);
        if (header.Type != NbdOptionReplyType.Ack)
        {
            throw new NbdNegotiationException($"server refused NBD_OPT_STARTTLS: {header.Type} {Encoding.UTF8.GetString(payload)}", header.Type);
        }
        // The server sends nothing after its ACK until our ClientHello, so the plain pipes hold no TLS bytes.
        await _reader.CompleteAsync().ConfigureAwait(false);
        await _writer.CompleteAsync().ConfigureAwait(false);
        var ssl = new System.Net.Security.SslStream(_stream, leaveInnerStreamOpen: false);
        _stream = ssl;
        (_reader, _writer) = CreatePipes(ssl);
        await ssl.AuthenticateAsClientAsync(tls, cancellationToken).ConfigureAwait(false);
    }

    private async Task<bool> TrySimpleOptionAsync(NbdOption option, CancellationToken cancellationToken)
    {
        NbdClientMessageWriter.WriteOption(_writer, option, default);
        await _writer.FlushAsync(cancellationToken).ConfigureAwait(false);
        var (header, _) = await ReadOptionReplyAsync(option, cancellationToken).ConfigureAwait(false);
        return header.Type == NbdOptionReplyType.Ack;
    }

    private async Task AbortAsync(CancellationToken cancellationToken)
    {
        NbdClientMessageWriter.WriteOption(_writer, NbdOption.Abort, default);
        await _writer.FlushAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            // The server may ACK or just close; either ends the session.
            await ReadOptionReplyAsync(NbdOption.Abort, cancellationToken).ConfigureAwait(false);
        }
        catch (NbdNegotiationException)
        {
        }
    }

    private async Task<(NbdOptionReplyHeader Header, byte[] Payload)> ReadOptionReplyAsync(NbdOption option, CancellationToken cancellationToken)
    {
        var reply = await NbdOptionReplyReader.ReadAsync(_reader, option, cancellationToken).ConfigureAwait(false);
        return (reply.Header, reply.Payload);
    }

    private async Task<byte[]> ReadPayloadAsync(int length, CancellationToken cancellationToken = default)
    {
        var payload = new byte[length];
        await ReadExactlyAsync(payload, cancellationToken).ConfigureAwait(false);
        return payload;
    }

    private async Task ReadExactlyAsync(Memory<byte> destination, CancellationToken cancellationToken = default)
    {
        while (!destination.IsEmpty)
        {
            var result = await _reader.ReadAsync(cancellationToken).ConfigureAwait(false);
            var buffer = result.Buffer;
            var take = (int)Math.Min(buffer.Length, destination.Length);
            buffer.Slice(0, take).CopyTo(destination.Span);
            destination = destination[take..];
            _reader.AdvanceTo(buffer.GetPosition(take));
            if (take == 0 && result.IsCompleted)
            {
                throw new EndOfStreamException("server closed the connection mid-message");
            }
        }
    }

    private sealed class PendingRequest(NbdCommand command, ulong offset)
    {
        public NbdCommand Command { get; } = command;
        public ulong Offset { get; } = offset;
        public Memory<byte> ReadBuffer { get; init; }
        public List<NbdBlockDescriptor>? Extents { get; init; }
        public NbdErrno Error { get; set; }
        public string? Message { get; set; }
        public TaskCompletionSource Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }
}
