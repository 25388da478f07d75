using System.IO.Pipelines;
using System.Net.Security;
using System.Security.Authentication;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using NbdQcow.Config;

namespace NbdQcow.Server.Nbd;

/// <summary>
/// The server side of NBD_OPT_STARTTLS: X.509 credentials loaded once, and the handshake that turns a
/// connection's plain pipes into a <see cref="TlsTransport"/>. TLS 1.2 and 1.3 only. No PSK: SslStream offers
/// no TLS-PSK, so qemu's tls-creds-psk and nbdkit's --tls-psk have no counterpart here.
/// </summary>
public sealed class TlsUpgrade
{
    /// <summary>A client that acknowledged STARTTLS but does not finish its handshake holds a connection at most this long.</summary>
    public static readonly TimeSpan HandshakeTimeout = TimeSpan.FromSeconds(15);

    private const string ClientAuthenticationOid = "1.3.6.1.5.5.7.3.2";

    private readonly SslStreamCertificateContext _certificateContext;

    public TlsUpgrade(TlsSettings settings)
    {
        Settings = settings;
        _certificateContext = SslStreamCertificateContext.Create(settings.ServerCertificate, settings.ServerChain, offline: true);
    }

    public TlsSettings Settings { get; }

    public TlsMode Mode => Settings.Mode;

    /// <summary>
    /// Runs the server handshake over the plain pipes. Throws <see cref="TlsHandshakeException"/> with the reason
    /// when it fails (the caller logs it and closes the connection).
    /// </summary>
    public async Task<TlsTransport> HandshakeAsync(PipeReader plainInput, PipeWriter plainOutput, CancellationToken cancellationToken)
    {
        var ssl = new SslStream(new DuplexPipeStream(plainInput, plainOutput), leaveInnerStreamOpen: true);
        SslPolicyErrors? rejected = null;
        var options = new SslServerAuthenticationOptions
        {
            ServerCertificateContext = _certificateContext,
            EnabledSslProtocols = SslProtocols.Tls12 | SslProtocols.Tls13,
            CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
            ClientCertificateRequired = Settings.VerifyPeer,
        };
        if (Settings.VerifyPeer)
        {
            options.CertificateChainPolicy = ClientChainPolicy();
            options.RemoteCertificateValidationCallback = (_, _, _, errors) =>
            {
                if (errors == SslPolicyErrors.None)
                {
                    return true;
                }
                rejected = errors;
                return false;
            };
        }
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(HandshakeTimeout);
        try
        {
            await ssl.AuthenticateAsServerAsync(options, timeout.Token).ConfigureAwait(false);
            return new TlsTransport(ssl, plainInput, plainOutput);
        }
        catch (Exception ex) when (ex is AuthenticationException or IOException or System.Net.Sockets.SocketException
            or CryptographicException or OperationCanceledException or InvalidOperationException)
        {
            try
            {
                await ssl.DisposeAsync().ConfigureAwait(false);
            }
            catch (Exception disposeError) when (disposeError is IOException or System.Net.Sockets.SocketException or ObjectDisposedException)
            {
                // The peer is gone; the handshake's own error is the one worth reporting.
            }
            if (ex is OperationCanceledException && cancellationToken.IsCancellationRequested)
            {
                throw;
            }
            var reason = rejected is { } errors
                ? $"client certificate rejected ({Describe(errors)})"
                : ex is OperationCanceledException
                    ? $"no handshake within {HandshakeTimeout.TotalSeconds:0} s"
                    : ex.InnerException is { } inner ? $"{ex.Message} ({inner.Message})" : ex.Message;
            throw new TlsHandshakeException(reason, ex);
        }
    }

    private X509ChainPolicy ClientChainPolicy()
    {
        var policy = new X509ChainPolicy
        {
            TrustMode = X509ChainTrustMode.CustomRootTrust,
            RevocationMode = X509RevocationMode.NoCheck,
            DisableCertificateDownloads = true,
        };
        policy.CustomTrustStore.AddRange(Settings.CaCertificates);
        policy.ApplicationPolicy.Add(new Oid(ClientAuthenticationOid));
        return policy;
    }

    private static string Describe(SslPolicyErrors errors) =>
        (errors & SslPolicyErrors.RemoteCertificateNotAvailable) != 0
            ? "the client sent no certificate; --tls-verify-peer requires one signed by " + TlsCertificateLoader.CaCertificateFile
            : (errors & SslPolicyErrors.RemoteCertificateChainErrors) != 0
                ? "not signed by " + TlsCertificateLoader.CaCertificateFile + ", expired, or not for client authentication"
                : errors.ToString();
}
