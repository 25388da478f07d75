using System.Security.Cryptography.X509Certificates;

namespace NbdQcow.Config;

/// <summary>Validated TLS configuration: the server's certificate with its key, loaded once at start.</summary>
public sealed record TlsSettings
{
    public required TlsMode Mode { get; init; }

    /// <summary>The folder the credentials came from (ca-cert.pem, server-cert.pem, server-key.pem).</summary>
    public required string CertificateDirectory { get; init; }

    /// <summary>server-cert.pem with the private key of server-key.pem.</summary>
    public required X509Certificate2 ServerCertificate { get; init; }

    /// <summary>Further certificates after the first in server-cert.pem (intermediates), sent with it.</summary>
    public required X509Certificate2Collection ServerChain { get; init; }

    /// <summary>ca-cert.pem (empty when absent); client certificates must chain to these when <see cref="VerifyPeer"/>.</summary>
    public required X509Certificate2Collection CaCertificates { get; init; }

    /// <summary>Require a client certificate signed by ca-cert.pem.</summary>
    public bool VerifyPeer { get; init; }
}
