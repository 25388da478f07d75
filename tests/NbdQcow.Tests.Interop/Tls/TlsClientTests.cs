using NbdQcow.Tests.Interop.Infrastructure;
using NbdQcow.Tests.Tls;

namespace NbdQcow.Tests.Interop.Tls;

/// <summary>
/// `nbdqcow serve --tls on|require --tls-certificates DIR [--tls-verify-peer]` driven by real TLS clients:
/// libnbd (nbdinfo, nbdcopy, python3-libnbd) through nbds:// URIs and qemu through tls-creds-x509.
/// Certificates come from a throwaway CA made in the test.
/// </summary>
public sealed class TlsClientTests : IDisposable
{
    private const int Mib = 1 << 20;
    private const long ImageSize = 32L * Mib;

    private readonly TestCertificateAuthority _ca = TestCertificateAuthority.Create();
    private readonly TempDirectory _certificates = new("tls");

    public TlsClientTests()
    {
        ServerFolder = _ca.WriteServerDirectory(_certificates.File("server"));
        ClientFolder = _ca.WriteClientDirectory(_certificates.File("client"));
        AnonymousClientFolder = _ca.WriteClientDirectory(_certificates.File("anonymous"), withClientCertificate: false);
    }

    /// <summary>ca-cert.pem, server-cert.pem, server-key.pem.</summary>
    private string ServerFolder { get; }

    /// <summary>ca-cert.pem, client-cert.pem, client-key.pem.</summary>
    private string ClientFolder { get; }

    /// <summary>ca-cert.pem only: trusts the server, has no certificate of its own.</summary>
    private string AnonymousClientFolder { get; }

    public void Dispose()
    {
        _ca.Dispose();
        _certificates.Dispose();
    }

    private ServeOptions Tls(string mode, bool unixSocket = false, bool verifyPeer = false) => new()
    {
        UnixSocket = unixSocket,
        ExtraArguments = verifyPeer
            ? ["--tls", mode, "--tls-certificates", ServerFolder, "--tls-verify-peer", "--verbose"]
            : ["--tls", mode, "--tls-certificates", ServerFolder, "--verbose"],
    };

    /// <summary>nbds://127.0.0.1:PORT/?tls-certificates=DIR or nbds+unix:///?socket=PATH&amp;tls-certificates=DIR.</summary>
    private static string TlsUri(ServerProcess server, string certificates) =>
        server.SocketPath is null
            ? $"nbds://127.0.0.1:{server.Port}/?tls-certificates={certificates}"
            : $"nbds+unix:///?socket={server.SocketPath}&tls-certificates={certificates}";

    private static async Task<ToolResult> NbdinfoAsync(string uri, bool debug = false) =>
        await ToolRunner.RunAsync("nbdinfo", [uri], TimeSpan.FromSeconds(60),
            environment: debug ? new Dictionary<string, string> { ["LIBNBD_DEBUG"] = "1" } : null);

    [Fact]
    public async Task Require_mode_nbdinfo_over_TLS_shows_TLS_and_a_plain_nbdinfo_is_refused_with_TLS_required()
    {
        await using var image = await ServedImage.StartRawAsync(ImageSize, Tls("require"));

        var secure = (await NbdinfoAsync(TlsUri(image.Server, ClientFolder))).EnsureSuccess(image.Server.Describe());
        Assert.Contains("with TLS", secure.Stdout);
        Assert.Contains("export-size: 33554432", secure.Stdout);

        var plain = (await NbdinfoAsync(image.Uri(), debug: true)).EnsureFailure(image.Server.Describe());
        // This libnbd maps NBD_REP_ERR_TLS_REQD to ENOTSUP; the server's message says what is wrong.
        Assert.Contains("TLS is required", plain.Stderr);
        image.Server.AssertStillRunning();
        await image.Server.StopAndAssertCleanExitAsync();
    }

    [Fact]
    public async Task On_mode_serves_plain_and_TLS_libnbd_clients_the_same_data()
    {
        await using var image = await ServedImage.StartRawAsync(ImageSize, Tls("on"));
        // python3-libnbd: write in plain text, read back over TLS, and the reverse; each says whether TLS was used.
        const string script = """
            import sys, nbd
            plain_uri, tls_uri = sys.argv[1], sys.argv[2]
            def open_(uri):
                h = nbd.NBD()
                h.set_uri_allow_local_file(True)  # tls-certificates= names a local folder
                h.connect_uri(uri)
                return h
            p = open_(plain_uri); t = open_(tls_uri)
            assert not p.get_tls_negotiated(), "plain client negotiated TLS"
            assert t.get_tls_negotiated(), "TLS client did not negotiate TLS"
            a = bytes(range(256)) * 4096
            p.pwrite(a, 0); p.flush()
            assert t.pread(len(a), 0) == a, "TLS read differs from plain write"
            b = bytes(reversed(range(256))) * 8192
            t.pwrite(b, 5 * 1024 * 1024 + 512); t.flush()
            assert p.pread(len(b), 5 * 1024 * 1024 + 512) == b, "plain read differs from TLS write"
            t.zero(65536, 0); t.trim(65536, 1 << 20)
            assert t.pread(65536, 0) == bytes(65536)
            p.shutdown(); t.shutdown()
            print("ok")
            """;
        (await ToolRunner.RunAsync(ToolRunner.Python, ["-c", script, image.Uri(), TlsUri(image.Server, ClientFolder)], TimeSpan.FromSeconds(60)))
            .EnsureSuccess(image.Server.Describe());
        await image.Server.StopAndAssertCleanExitAsync();
    }

    [Fact]
    public async Task Nbd_client_lists_exports_over_TLS_and_without_TLS_is_told_TLS_is_required()
    {
        await using var image = await ServedImage.StartRawAsync(ImageSize, Tls("require"));
        var port = image.Server.Port!.Value.ToString(System.Globalization.CultureInfo.InvariantCulture);

        var secure = (await ToolRunner.RunAsync("nbd-client", ["-cacertfile", Path.Combine(ClientFolder, "ca-cert.pem"),
                "-certfile", Path.Combine(ClientFolder, "client-cert.pem"), "-keyfile", Path.Combine(ClientFolder, "client-key.pem"),
                "-tlshostname", "localhost", "-enable-tls", "127.0.0.1", port, "-l"], TimeSpan.FromSeconds(60)))
            .EnsureSuccess(image.Server.Describe());
        Assert.Contains("disk", secure.Stdout);

        var plain = await ToolRunner.RunAsync("nbd-client", ["127.0.0.1", port, "-l"], TimeSpan.FromSeconds(60));
        Assert.Contains("TLS is required", plain.Stdout + plain.Stderr);
        await image.Server.StopAndAssertCleanExitAsync();
    }

    [Fact]
    public async Task Nbdcopy_over_TLS_copies_in_and_out_byte_for_byte()
    {
        await using var image = await ServedImage.StartRawAsync(ImageSize, Tls("require"));
        var source = image.Folder.File("source.raw");
        RawImageFile.CreateSparse(source, ImageSize);
        RawImageFile.Write(source, 3L * Mib + 100, TestPattern.Bytes(21, 9 * Mib));
        RawImageFile.Write(source, 30L * Mib, TestPattern.Bytes(22, Mib));
        var uri = TlsUri(image.Server, ClientFolder);

        (await ToolRunner.RunAsync("nbdcopy", ["--flush", source, uri])).EnsureSuccess(image.Server.Describe());
        var back = image.Folder.File("back.raw");
        (await ToolRunner.RunAsync("nbdcopy", [uri, back])).EnsureSuccess(image.Server.Describe());

        (await ToolRunner.RunAsync("cmp", [source, back])).EnsureSuccess();
        await image.Server.StopAndAssertCleanExitAsync();
        (await ToolRunner.RunAsync("cmp", [source, image.ImagePath])).EnsureSuccess();
    }

    [Fact]
    public async Task Qemu_io_writes_and_reads_over_TLS_and_qemu_img_compare_matches_the_image()
    {
        await using var image = await ServedImage.StartRawAsync(ImageSize, Tls("require"));
        var port = image.Server.Port!.Value;
        var tlsObject = $"tls-creds-x509,id=tls0,dir={ClientFolder},endpoint=client";
        var nbd = $"driver=nbd,host=127.0.0.1,port={port},tls-creds=tls0";

        (await ToolRunner.RunAsync("qemu-io", ["--object", tlsObject, "--image-opts", nbd,
                "-c", "write -P 0x5a 1M 3M", "-c", "write -P 0xa5 20M 64k", "-c", "read -P 0x5a 1M 3M", "-c", "read -P 0 0 1M"]))
            .EnsureSuccess(image.Server.Describe());
        // -U: the server still serves (and write-locks) the file; a read-only look at it must share, as with qemu.
        (await ToolRunner.RunAsync("qemu-img", ["compare", "-U", "--object", tlsObject, "--image-opts", nbd,
                $"driver=file,filename={image.ImagePath}"]))
            .EnsureSuccess(image.Server.Describe());
        await image.Server.StopAndAssertCleanExitAsync();
        TestPattern.AssertEqual(Enumerable.Repeat((byte)0xa5, 65536).ToArray(), RawImageFile.Read(image.ImagePath, 20L * Mib, 65536),
            20L * Mib, "image after qemu-io over TLS");
    }

    [Fact]
    public async Task Unix_socket_with_verify_peer_serves_a_client_certificate_and_refuses_a_client_without_one()
    {
        await using var image = await ServedImage.StartRawAsync(ImageSize, Tls("require", unixSocket: true, verifyPeer: true));

        var refused = (await NbdinfoAsync(TlsUri(image.Server, AnonymousClientFolder))).EnsureFailure(image.Server.Describe());
        Assert.DoesNotContain("export-size", refused.Stdout);
        var accepted = (await NbdinfoAsync(TlsUri(image.Server, ClientFolder))).EnsureSuccess(image.Server.Describe());
        Assert.Contains("with TLS", accepted.Stdout);

        Assert.Contains("TLS handshake failed: client certificate rejected (the client sent no certificate", image.Server.Output);
        await image.Server.StopAndAssertCleanExitAsync();
    }

    [Fact]
    public async Task Client_trusting_another_CA_fails_cleanly_and_the_server_keeps_serving_others()
    {
        await using var image = await ServedImage.StartRawAsync(ImageSize, Tls("on"));
        using var otherCa = TestCertificateAuthority.Create("unrelated CA");
        var wrongFolder = otherCa.WriteClientDirectory(_certificates.File("wrong-ca"));

        var failed = (await NbdinfoAsync(TlsUri(image.Server, wrongFolder))).EnsureFailure(image.Server.Describe());
        Assert.Contains("certificate", failed.Stderr, StringComparison.OrdinalIgnoreCase);
        image.Server.AssertStillRunning();

        (await NbdinfoAsync(TlsUri(image.Server, ClientFolder))).EnsureSuccess(image.Server.Describe());
        (await NbdinfoAsync(image.Uri())).EnsureSuccess(image.Server.Describe());
        Assert.DoesNotContain("session ended with an error", image.Server.Output);
        await image.Server.StopAndAssertCleanExitAsync();
    }

    [Fact]
    public async Task Serve_refuses_to_start_when_the_certificate_folder_is_missing_and_names_the_key()
    {
        using var folder = new TempDirectory("tls-bad");
        var imagePath = folder.File("disk.img");
        RawImageFile.CreateSparse(imagePath, ImageSize);
        var result = await ToolRunner.RunAsync(RepositoryRoot.Launcher,
            ["serve", imagePath, "--listen", "127.0.0.1:0", "--tls", "require", "--tls-certificates", folder.File("missing")], TimeSpan.FromSeconds(120));
        Assert.Equal(2, result.ExitCode);
        Assert.Contains("TlsCertificates: folder", result.Stderr);
    }

    [Fact]
    public async Task Serve_help_documents_the_tls_options_and_says_PSK_is_not_available()
    {
        var help = (await ToolRunner.RunAsync(RepositoryRoot.Launcher, ["serve", "--help"], TimeSpan.FromSeconds(120))).EnsureSuccess();
        Assert.Contains("--tls <off|on|require>", help.Stdout);
        Assert.Contains("--tls-certificates <DIR>", help.Stdout);
        Assert.Contains("--tls-verify-peer", help.Stdout);
        Assert.Contains("PSK", help.Stdout);
    }
}
