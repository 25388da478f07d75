using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace NbdQcow.Config;

/// <summary>
/// Loads TLS credentials from a folder laid out as qemu and nbdkit expect (ca-cert.pem, server-cert.pem,
/// server-key.pem) and checks them at start, so a bad file is one clear message naming the key and the file
/// instead of a failed handshake per client later.
/// </summary>
public static class TlsCertificateLoader
{
    public const string CaCertificateFile = "ca-cert.pem";
    public const string ServerCertificateFile = "server-cert.pem";
    public const string ServerKeyFile = "server-key.pem";

    private const string Key = "TlsCertificates";
    private const string RsaOid = "1.2.840.113549.1.1.1";
    private const string EcOid = "1.2.840.10045.2.1";

    /// <summary>Returns the settings, or null after adding one problem per thing wrong.</summary>
    public static TlsSettings? Load(TlsMode mode, string directory, bool verifyPeer, DateTime now, List<string> problems)
    {
        if (!Directory.Exists(directory))
        {
            problems.Add($"{Key}: folder '{directory}' does not exist; allowed: a folder holding {ServerCertificateFile} and {ServerKeyFile}" +
                         $" (and {CaCertificateFile}), as for qemu's tls-creds-x509 or nbdkit --tls-certificates");
            return null;
        }
        var before = problems.Count;
        var certificates = LoadCertificates(Path.Combine(directory, ServerCertificateFile), required: true, problems);
        var caCertificates = LoadCertificates(Path.Combine(directory, CaCertificateFile), required: verifyPeer, problems)
            ?? [];
        X509Certificate2? serverCertificate = null;
        if (certificates is { Count: > 0 })
        {
            CheckValidity(certificates[0], Path.Combine(directory, ServerCertificateFile), now, problems);
            serverCertificate = AttachKey(certificates[0], Path.Combine(directory, ServerKeyFile), problems);
        }
        if (verifyPeer)
        {
            foreach (var ca in caCertificates)
            {
                CheckValidity(ca, Path.Combine(directory, CaCertificateFile), now, problems);
            }
        }
        if (problems.Count > before || serverCertificate is null || certificates is null)
        {
            return null;
        }
        var chain = new X509Certificate2Collection();
        for (var i = 1; i < certificates.Count; i++)
        {
            chain.Add(certificates[i]);
        }
        return new TlsSettings
        {
            Mode = mode,
            CertificateDirectory = Path.GetFullPath(directory),
            ServerCertificate = serverCertificate,
            ServerChain = chain,
            CaCertificates = caCertificates,
            VerifyPeer = verifyPeer,
        };
    }

    private static X509Certificate2Collection? LoadCertificates(string path, bool required, List<string> problems)
    {
        if (!File.Exists(path))
        {
            if (required)
            {
                problems.Add($"{Key}: '{path}' is missing; allowed: a PEM file with the certificate (BEGIN CERTIFICATE)");
            }
            return null;
        }
        if (ReadText(path, problems) is not { } text) return null;
        var collection = new X509Certificate2Collection();
        try
        {
            collection.ImportFromPem(text);
        }
        catch (CryptographicException ex)
        {
            problems.Add($"{Key}: '{path}' is not a valid PEM certificate: {ex.Message}");
            return null;
        }
        if (collection.Count == 0)
        {
            problems.Add($"{Key}: '{path}' holds no certificate; allowed: a PEM file with BEGIN CERTIFICATE blocks");
            return null;
        }
        return collection;
    }

    private static string? ReadText(string path, List<string> problems)
    {
        try
        {
            return File.ReadAllText(path);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            problems.Add($"{Key}: cannot read '{path}': {ex.Message}");
            return null;
        }
    }

    private static void CheckValidity(X509Certificate2 certificate, string path, DateTime now, List<string> problems)
    {
        if (now < certificate.NotBefore)
        {
            problems.Add($"{Key}: '{path}' ({certificate.Subject}) is not valid yet: valid from {certificate.NotBefore.ToUniversalTime():yyyy-MM-dd HH:mm:ss} UTC");
        }
        else if (now > certificate.NotAfter)
        {
            problems.Add($"{Key}: '{path}' ({certificate.Subject}) expired on {certificate.NotAfter.ToUniversalTime():yyyy-MM-dd HH:mm:ss} UTC");
        }
    }

    private static X509Certificate2? AttachKey(X509Certificate2 certificate, string keyPath, List<string> problems)
    {
        if (!File.Exists(keyPath))
        {
            problems.Add($"{Key}: '{keyPath}' is missing; allowed: the PEM private key of {ServerCertificateFile}");
            return null;
        }
        if (ReadText(keyPath, problems) is not { } text) return null;
        if (text.Contains("ENCRYPTED", StringComparison.Ordinal))
        {
            problems.Add($"{Key}: '{keyPath}' is encrypted; allowed: an unencrypted PEM key (openssl pkey -in KEY -out {ServerKeyFile})");
            return null;
        }
        var algorithm = certificate.GetKeyAlgorithm();
        try
        {
            if (algorithm == RsaOid)
            {
                using var rsa = RSA.Create();
                if (!TryImport(rsa, text))
                {
                    problems.Add(NotMatching(keyPath, "an RSA key", text));
                    return null;
                }
                return certificate.CopyWithPrivateKey(rsa);
            }
            if (algorithm == EcOid)
            {
                using var ecdsa = ECDsa.Create();
                if (!TryImport(ecdsa, text))
                {
                    problems.Add(NotMatching(keyPath, "an ECDSA key", text));
                    return null;
                }
                return certificate.CopyWithPrivateKey(ecdsa);
            }
            problems.Add($"{Key}: {ServerCertificateFile} has a key of algorithm {algorithm}; allowed: RSA or ECDSA");
            return null;
        }
        catch (ArgumentException)
        {
            // CopyWithPrivateKey: the key is well formed but belongs to another certificate.
            problems.Add($"{Key}: '{keyPath}' does not match {ServerCertificateFile} (different public key); allowed: the key the certificate was issued for");
            return null;
        }
    }

    private static bool TryImport(AsymmetricAlgorithm algorithm, string pem)
    {
        try
        {
            algorithm.ImportFromPem(pem);
            return true;
        }
        catch (Exception ex) when (ex is ArgumentException or CryptographicException)
        {
            return false;
        }
    }

    private static string NotMatching(string keyPath, string expected, string pem)
    {
        var isKey = pem.Contains("PRIVATE KEY-----", StringComparison.Ordinal);
        return isKey
            ? $"{Key}: '{keyPath}' does not match {ServerCertificateFile}: the certificate needs {expected}"
            : $"{Key}: '{keyPath}' is not a PEM private key; allowed: BEGIN PRIVATE KEY, BEGIN RSA PRIVATE KEY or BEGIN EC PRIVATE KEY";
    }
}
