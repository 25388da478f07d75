using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace NbdQcow.Tests.Tls;

/// <summary>
/// A throwaway certificate authority for TLS tests, made with .NET's CertificateRequest (nothing committed):
/// writes folders in the layout qemu, nbdkit and libnbd read (ca-cert.pem, server-cert.pem, server-key.pem,
/// client-cert.pem, client-key.pem). Shared by the unit and interop test projects (linked source file).
/// The CA and client keys are ECDSA P-256 (generated in microseconds); server keys are RSA 2048 unless asked
/// for ECDSA, so both key types the server loads are exercised.
/// </summary>
public sealed class TestCertificateAuthority : IDisposable
{
    private const string ServerAuthenticationOid = "1.3.6.1.5.5.7.3.1";
    private const string ClientAuthenticationOid = "1.3.6.1.5.5.7.3.2";

    private readonly ECDsa _key;

    private TestCertificateAuthority(ECDsa key, X509Certificate2 certificate)
    {
        _key = key;
        Certificate = certificate;
    }

    /// <summary>The CA certificate (public part).</summary>
    public X509Certificate2 Certificate { get; }

    public static TestCertificateAuthority Create(string commonName = "NbdQcow test CA")
    {
        var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest($"CN={commonName}", key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, false));
        var now = DateTimeOffset.UtcNow;
        var certificate = request.CreateSelfSigned(now.AddDays(-1), now.AddYears(1));
        return new TestCertificateAuthority(key, certificate);
    }

    /// <summary>A server certificate for localhost, 127.0.0.1 and ::1, with its key.</summary>
    public (X509Certificate2 Certificate, AsymmetricAlgorithm Key) IssueServer(DateTimeOffset? notBefore = null, DateTimeOffset? notAfter = null,
        bool ecdsa = false)
    {
        var san = new SubjectAlternativeNameBuilder();
        san.AddDnsName("localhost");
        san.AddIpAddress(IPAddress.Loopback);
        san.AddIpAddress(IPAddress.IPv6Loopback);
        return Issue("CN=localhost", ServerAuthenticationOid, san.Build(), notBefore, notAfter, ecdsa);
    }

    /// <summary>A client certificate (client authentication), with its key.</summary>
    public (X509Certificate2 Certificate, AsymmetricAlgorithm Key) IssueClient(string commonName = "nbd test client") =>
        Issue($"CN={commonName}", ClientAuthenticationOid, null, null, null, ecdsa: true);

    /// <summary>ca-cert.pem, server-cert.pem and server-key.pem: what `nbdqcow serve --tls-certificates` reads.</summary>
    public string WriteServerDirectory(string directory, DateTimeOffset? notBefore = null, DateTimeOffset? notAfter = null,
        bool ecdsa = false)
    {
        Directory.CreateDirectory(directory);
        WriteCertificate(Path.Combine(directory, "ca-cert.pem"), Certificate);
        var (certificate, key) = IssueServer(notBefore, notAfter, ecdsa);
        using (key)
        {
            WriteCertificate(Path.Combine(directory, "server-cert.pem"), certificate);
            File.WriteAllText(Path.Combine(directory, "server-key.pem"), key.ExportPkcs8PrivateKeyPem());
        }
        return directory;
    }

    /// <summary>
    /// ca-cert.pem and, unless <paramref name="withClientCertificate"/> is false, client-cert.pem and client-key.pem:
    /// what libnbd's tls-certificates and qemu's tls-creds-x509 endpoint=client read.
    /// </summary>
    public string WriteClientDirectory(string directory, bool withClientCertificate = true)
    {
        Directory.CreateDirectory(directory);
        WriteCertificate(Path.Combine(directory, "ca-cert.pem"), Certificate);
        if (withClientCertificate)
        {
            var (certificate, key) = IssueClient();
            using (key)
            {
                WriteCertificate(Path.Combine(directory, "client-cert.pem"), certificate);
                File.WriteAllText(Path.Combine(directory, "client-key.pem"), key.ExportPkcs8PrivateKeyPem());
            }
        }
        return directory;
    }

    public static void WriteCertificate(string path, X509Certificate2 certificate) =>
        File.WriteAllText(path, certificate.ExportCertificatePem());

    public void Dispose() => _key.Dispose();

    private (X509Certificate2 Certificate, AsymmetricAlgorithm Key) Issue(string subject, string usageOid, X509Extension? san,
        DateTimeOffset? notBefore, DateTimeOffset? notAfter, bool ecdsa)
    {
        AsymmetricAlgorithm key = ecdsa ? ECDsa.Create(ECCurve.NamedCurves.nistP256) : RSA.Create(2048);
        var request = key is RSA rsa
            ? new CertificateRequest(subject, rsa, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1)
            : new CertificateRequest(subject, (ECDsa)key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(
            X509KeyUsageFlags.DigitalSignature | (ecdsa ? 0 : X509KeyUsageFlags.KeyEncipherment), true));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid(usageOid)], false));
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, false));
        request.CertificateExtensions.Add(X509AuthorityKeyIdentifierExtension.CreateFromCertificate(Certificate, true, false));
        if (san is not null)
        {
            request.CertificateExtensions.Add(san);
        }
        var now = DateTimeOffset.UtcNow;
        var from = notBefore ?? now.AddHours(-1);
        var to = notAfter ?? now.AddDays(30);
        var serial = RandomNumberGenerator.GetBytes(16);
        serial[0] &= 0x7f;
        var signer = X509SignatureGenerator.CreateForECDsa(_key);
        var certificate = request.Create(Certificate.SubjectName, signer, from, to, serial);
        return (certificate, key);
    }

    /// <summary>The certificate joined with its private key, as a client presents it.</summary>
    public static X509Certificate2 WithKey(X509Certificate2 certificate, AsymmetricAlgorithm key) => key switch
    {
        RSA rsa => certificate.CopyWithPrivateKey(rsa),
        ECDsa ecdsa => certificate.CopyWithPrivateKey(ecdsa),
        _ => throw new ArgumentException("RSA or ECDSA keys only", nameof(key)),
    };
}
