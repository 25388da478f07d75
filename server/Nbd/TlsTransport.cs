using System.IO.Pipelines;
using System.Net.Security;

namespace NbdQcow.Server.Nbd;

/// <summary>
/// A connection after NBD_OPT_STARTTLS: pipes over the SslStream, which runs over the connection's plain pipes.
/// The session reads and writes <see cref="Input"/>/<see cref="Output"/> as it did the plain ones; disposing sends
/// the TLS close_notify and completes the plain pipes.
/// </summary>
public sealed class TlsTransport : IDuplexPipe, IAsyncDisposable
{
    private static readonly TimeSpan ShutdownTimeout = TimeSpan.FromSeconds(2);

    private readonly SslStream _ssl;
    private readonly PipeReader _plainInput;
    private readonly PipeWriter _plainOutput;
    private bool _disposed;

    internal TlsTransport(SslStream ssl, PipeReader plainInput, PipeWriter plainOutput)
    {
        _ssl = ssl;
        _plainInput = plainInput;
        _plainOutput = plainOutput;
        // Records are at most 16 KiB; 64 KiB buffers keep large WRITE payloads and READ replies to few calls.
        Input = PipeReader.Create(ssl, new StreamPipeReaderOptions(bufferSize: 64 * 1024, minimumReadSize: 16 * 1024, leaveOpen: true));
        Output = PipeWriter.Create(ssl, new StreamPipeWriterOptions(minimumBufferSize: 64 * 1024, leaveOpen: true));
    }

    public PipeReader Input { get; }

    public PipeWriter Output { get; }

    /// <summary>"TLS 1.3, TLS_AES_256_GCM_SHA384[, client CN=...]" for the log.</summary>
    public string Description
    {
        get
        {
            var protocol = _ssl.SslProtocol switch
            {
                System.Security.Authentication.SslProtocols.Tls12 => "TLS 1.2",
                System.Security.Authentication.SslProtocols.Tls13 => "TLS 1.3",
                var other => other.ToString(),
            };
            var client = _ssl.RemoteCertificate is { } certificate ? $", client {certificate.Subject}" : "";
            return $"{protocol}, {_ssl.NegotiatedCipherSuite}{client}";
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (_disposed)
        {
            return;
        }
        _disposed = true;
        await Input.CompleteAsync().ConfigureAwait(false);
        await Output.CompleteAsync().ConfigureAwait(false);
        try
        {
            // close_notify, so the client sees a clean TLS end rather than a truncation.
            await _ssl.ShutdownAsync().WaitAsync(ShutdownTimeout).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is IOException or System.Net.Sockets.SocketException or InvalidOperationException
            or ObjectDisposedException or TimeoutException or System.Security.Authentication.AuthenticationException or OperationCanceledException)
        {
            // The peer is gone or the session never got going; nothing more to say to it.
        }
        try
        {
            // Disposing flushes the plain stream, which fails when the peer already hung up.
            await _ssl.DisposeAsync().ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is IOException or System.Net.Sockets.SocketException or ObjectDisposedException or InvalidOperationException)
        {
        }
        await _plainOutput.CompleteAsync().ConfigureAwait(false);
        await _plainInput.CompleteAsync().ConfigureAwait(false);
    }
}
