using System.Security.Cryptography.X509Certificates;
using NbdQcow.Config;
using NbdQcow.Tests.Tls;

namespace NbdQcow.Tests.Unit.Config;

/// <summary>Tls, TlsCertificates and TlsVerifyPeer from the CLI, environment and JSON, and the refusals that name the key.</summary>
public sealed class TlsConfigurationTests : IDisposable
{
    private static readonly KeyValuePair<string, string?>[] NoEnvironment = [];

    private readonly DirectoryInfo _dir = Directory.CreateTempSubdirectory("nbdqcow-tls-config-");
    private readonly TestCertificateAuthority _ca = TestCertificateAuthority.Create();

    public void Dispose()
    {
        _ca.Dispose();
        _dir.Delete(recursive: true);
    }

    private string Folder(string name) => Path.Combine(_dir.FullName, name);

    private static ServeOverrides Cli(string? tls, string? certificates, bool verifyPeer = false) => new()
    {
        ImagePath = "/images/disk.img",
        ["Tls"] = tls,
        ["TlsCertificates"] = certificates,
        ["TlsVerifyPeer"] = verifyPeer ? "true" : null,
    };

    private static string Refusal(ServeOverrides overrides, IEnumerable<KeyValuePair<string, string?>>? environment = null) =>
        string.Join("\n", Assert.Throws<ConfigurationException>(() => ServerConfigurationLoader.Load(null, overrides, environment ?? NoEnvironment)).Problems);

    [Fact]
    public void Tls_is_off_by_default_and_loads_nothing()
    {
        var settings = ServerConfigurationLoader.Load(null, Cli(null, null), NoEnvironment);
        Assert.Null(settings.Tls);
    }

    [Theory]
    [InlineData("on", TlsMode.On)]
    [InlineData("require", TlsMode.Require)]
    public void Tls_on_and_require_load_the_server_certificate_with_its_key(string mode, TlsMode expected)
    {
        var folder = _ca.WriteServerDirectory(Folder("ok"));
        var settings = ServerConfigurationLoader.Load(null, Cli(mode, folder), NoEnvironment);

        Assert.NotNull(settings.Tls);
        Assert.Equal(expected, settings.Tls.Mode);
        Assert.True(settings.Tls.ServerCertificate.HasPrivateKey);
        Assert.Equal("CN=localhost", settings.Tls.ServerCertificate.Subject);
        Assert.Single(settings.Tls.CaCertificates);
        Assert.False(settings.Tls.VerifyPeer);
    }

    [Fact]
    public void Ecdsa_server_key_loads_as_well_as_RSA()
    {
        var folder = _ca.WriteServerDirectory(Folder("ecdsa"), ecdsa: true);
        var settings = ServerConfigurationLoader.Load(null, Cli("on", folder), NoEnvironment);
        Assert.NotNull(settings.Tls!.ServerCertificate.GetECDsaPrivateKey());
    }

    [Fact]
    public void Ecdsa_key_for_an_RSA_certificate_is_refused_as_not_matching()
    {
        var folder = _ca.WriteServerDirectory(Folder("kinds"));
        using var ecdsa = System.Security.Cryptography.ECDsa.Create(System.Security.Cryptography.ECCurve.NamedCurves.nistP256);
        File.WriteAllText(Path.Combine(folder, "server-key.pem"), ecdsa.ExportPkcs8PrivateKeyPem());
        Assert.Contains("does not match server-cert.pem: the certificate needs an RSA key", Refusal(Cli("on", folder)));
    }

    [Fact]
    public void Environment_variables_set_tls_the_same_way()
    {
        var folder = _ca.WriteServerDirectory(Folder("env"));
        var environment = new Dictionary<string, string?>
        {
            ["NBDQCOW__TLS"] = "require",
            ["NBDQCOW__TLSCERTIFICATES"] = folder,
            ["NBDQCOW__TLSVERIFYPEER"] = "true",
        };
        var settings = ServerConfigurationLoader.Load(null, Cli(null, null), environment);

        Assert.Equal(TlsMode.Require, settings.Tls!.Mode);
        Assert.True(settings.Tls.VerifyPeer);
    }

    [Fact]
    public void Json_config_sets_tls_and_the_command_line_overrides_its_mode()
    {
        var folder = _ca.WriteServerDirectory(Folder("json"));
        var config = Path.Combine(_dir.FullName, "config.json");
        File.WriteAllText(config, $$"""{ "Tls": "on", "TlsCertificates": "{{folder}}" }""");

        Assert.Equal(TlsMode.On, ServerConfigurationLoader.Load(config, Cli(null, null), NoEnvironment).Tls!.Mode);
        Assert.Equal(TlsMode.Require, ServerConfigurationLoader.Load(config, Cli("require", null), NoEnvironment).Tls!.Mode);
    }

    [Fact]
    public void Example_tls_config_is_valid_once_its_certificate_folder_exists()
    {
        var root = new DirectoryInfo(AppContext.BaseDirectory);
        while (root is not null && !File.Exists(Path.Combine(root.FullName, "NbdQcow.sln")))
        {
            root = root.Parent;
        }
        Assert.NotNull(root);
        var example = Path.Combine(root.FullName, "config", "examples", "tls.json");
        // The example points at /etc/pki/nbdqcow; the environment layer moves it to this test's folder.
        var folder = _ca.WriteServerDirectory(Folder("example"));
        var settings = ServerConfigurationLoader.Load(example, new ServeOverrides(),
            new Dictionary<string, string?> { ["NBDQCOW__TLSCERTIFICATES"] = folder });

        Assert.Equal(TlsMode.Require, settings.Tls!.Mode);
        Assert.True(settings.Tls.VerifyPeer);
        Assert.Equal("system", Assert.Single(settings.Exports).Name);
    }

    [Fact]
    public void Unknown_mode_is_refused_naming_the_key_and_the_allowed_values()
    {
        var message = Refusal(Cli("maybe", null));
        Assert.Contains("Tls: 'maybe' is not allowed; allowed: off, on, require", message);
    }

    [Fact]
    public void Tls_without_a_certificate_folder_is_refused()
    {
        Assert.Contains("TlsCertificates: missing", Refusal(Cli("require", null)));
    }

    [Fact]
    public void Verify_peer_without_tls_is_refused()
    {
        Assert.Contains("TlsVerifyPeer: needs TLS", Refusal(Cli(null, null, verifyPeer: true)));
    }

    [Fact]
    public void Missing_folder_is_refused_naming_it()
    {
        var message = Refusal(Cli("on", Folder("nowhere")));
        Assert.Contains("TlsCertificates: folder", message);
        Assert.Contains("nowhere", message);
    }

    [Fact]
    public void Missing_key_file_is_refused_naming_it()
    {
        var folder = _ca.WriteServerDirectory(Folder("nokey"));
        File.Delete(Path.Combine(folder, "server-key.pem"));
        Assert.Contains("server-key.pem' is missing", Refusal(Cli("on", folder)));
    }

    [Fact]
    public void Key_that_is_not_a_key_is_refused()
    {
        var folder = _ca.WriteServerDirectory(Folder("garbage"));
        File.WriteAllText(Path.Combine(folder, "server-key.pem"), "not a key\n");
        Assert.Contains("is not a PEM private key", Refusal(Cli("on", folder)));
    }

    [Fact]
    public void Encrypted_key_is_refused_with_the_command_that_decrypts_it()
    {
        var folder = _ca.WriteServerDirectory(Folder("encrypted"));
        using var key = System.Security.Cryptography.RSA.Create(2048);
        var encrypted = key.ExportEncryptedPkcs8PrivateKeyPem("secret",
            new System.Security.Cryptography.PbeParameters(System.Security.Cryptography.PbeEncryptionAlgorithm.Aes128Cbc,
                System.Security.Cryptography.HashAlgorithmName.SHA256, 1000));
        File.WriteAllText(Path.Combine(folder, "server-key.pem"), encrypted);
        Assert.Contains("is encrypted", Refusal(Cli("on", folder)));
    }

    [Fact]
    public void Key_of_another_certificate_is_refused_as_not_matching()
    {
        var folder = _ca.WriteServerDirectory(Folder("mismatch"));
        var (_, otherKey) = _ca.IssueServer();
        using (otherKey)
        {
            File.WriteAllText(Path.Combine(folder, "server-key.pem"), ((System.Security.Cryptography.RSA)otherKey).ExportPkcs8PrivateKeyPem());
        }
        Assert.Contains("does not match server-cert.pem", Refusal(Cli("on", folder)));
    }

    [Fact]
    public void Expired_certificate_is_refused_with_its_end_date()
    {
        var folder = _ca.WriteServerDirectory(Folder("expired"), DateTimeOffset.UtcNow.AddDays(-10), DateTimeOffset.UtcNow.AddDays(-1));
        Assert.Contains("expired on", Refusal(Cli("on", folder)));
    }

    [Fact]
    public void Certificate_not_yet_valid_is_refused_with_its_start_date()
    {
        var folder = _ca.WriteServerDirectory(Folder("future"), DateTimeOffset.UtcNow.AddDays(1), DateTimeOffset.UtcNow.AddDays(10));
        Assert.Contains("is not valid yet", Refusal(Cli("on", folder)));
    }

    [Fact]
    public void Verify_peer_needs_the_ca_certificate()
    {
        var folder = _ca.WriteServerDirectory(Folder("noca"));
        File.Delete(Path.Combine(folder, "ca-cert.pem"));
        Assert.Contains("ca-cert.pem' is missing", Refusal(Cli("on", folder, verifyPeer: true)));
        // Without peer verification the CA file is optional.
        Assert.NotNull(ServerConfigurationLoader.Load(null, Cli("on", folder), NoEnvironment).Tls);
    }
}
