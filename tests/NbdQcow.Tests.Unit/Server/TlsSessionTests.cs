using System.Net;
using System.Net.Security;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using NbdQcow.Config;
using NbdQcow.Protocol;
using NbdQcow.Protocol.Client;
using NbdQcow.Server.Exports;
using NbdQcow.Server.Logging;
using NbdQcow.Server.Nbd;
using NbdQcow.Tests.Tls;

namespace NbdQcow.Tests.Unit.Server;

/// <summary>
/// NBD_OPT_STARTTLS and option handling before and after it, in the spec's FORCEDTLS (--tls require), SELECTIVETLS
/// (--tls on) and NOTLS (--tls off) modes, against an in-process server over loopback TCP.
/// </summary>
public sealed class TlsSessionTests : IDisposable
{
    private const long Size = 16L * 1024 * 1024;
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    private readonly DirectoryInfo _dir = Directory.CreateTempSubdirectory("nbdqcow-tls-session-");
    private readonly TestCertificateAuthority _ca = TestCertificateAuthority.Create();
    private readonly StringWriter _logText = new();

    public void Dispose()
    {
        _ca.Dispose();
        _dir.Delete(recursive: true);
    }

    private string Log
    {
        get
        {
            lock (_logText)
            {
                return _logText.ToString();
            }
        }
    }

    private sealed class Running(NbdServer server, ExportRegistry registry, int port) : IAsyncDisposable
    {
        public int Port => port;

        public NbdServer Server => server;

        public async ValueTask DisposeAsync()
        {
            await server.StopAsync(TimeSpan.FromSeconds(20));
            await registry.DisposeAsync();
        }
    }

    private Running Start(TlsMode mode, bool verifyPeer = false)
    {
        TlsUpgrade? tls = null;
        if (mode != TlsMode.Off)
        {
            var problems = new List<string>();
            var folder = _ca.WriteServerDirectory(Path.Combine(_dir.FullName, "server"));
            var settings = TlsCertificateLoader.Load(mode, folder, verifyPeer, DateTime.Now, problems);
            Assert.True(settings is not null, string.Join("\n", problems));
            tls = new TlsUpgrade(settings);
        }
        var registry = new ExportRegistry();
        registry.Add(new NbdExport("disk", new MemoryBlockDevice(Size)));
        var server = new NbdServer(registry, new NbdSessionOptions { Tls = tls }, new ServerLog(new ServerLogWriter(_logText, journalPriorities: false)));
        var bound = server.ListenTcp(new IPEndPoint(IPAddress.Loopback, 0));
        return new Running(server, registry, bound.Port);
    }

    private SslClientAuthenticationOptions ClientTls(X509Certificate2? trusted = null, bool withClientCertificate = false)
    {
        var policy = new X509ChainPolicy { TrustMode = X509ChainTrustMode.CustomRootTrust, RevocationMode = X509RevocationMode.NoCheck };
        policy.CustomTrustStore.Add(trusted ?? _ca.Certificate);
        var options = new SslClientAuthenticationOptions
        {
            TargetHost = "localhost",
            CertificateChainPolicy = policy,
            RemoteCertificateValidationCallback = (_, _, _, errors) => errors == SslPolicyErrors.None,
        };
        if (withClientCertificate)
        {
            var (certificate, key) = _ca.IssueClient();
            using (key)
            {
                options.ClientCertificates = [TestCertificateAuthority.WithKey(certificate, key)];
            }
        }
        return options;
    }

    private static async Task<NbdOptionSession> OpenAsync(Running server)
    {
        using var timeout = new CancellationTokenSource(Timeout);
        return await NbdOptionSession.StartAsync(await NbdClient.OpenTcpStreamAsync("127.0.0.1", server.Port, timeout.Token), timeout.Token);
    }

    private static byte[] InfoPayload(string name)
    {
        var bytes = Encoding.UTF8.GetBytes(name);
        var payload = new byte[4 + bytes.Length + 2];
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(payload, (uint)bytes.Length);
        bytes.CopyTo(payload, 4);
        return payload;
    }

    private static byte[] MetaContextPayload(string export, string query)
    {
        var name = Encoding.UTF8.GetBytes(export);
        var q = Encoding.UTF8.GetBytes(query);
        var payload = new byte[4 + name.Length + 4 + 4 + q.Length];
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(payload, (uint)name.Length);
        name.CopyTo(payload, 4);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(payload.AsSpan(4 + name.Length), 1);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(payload.AsSpan(8 + name.Length), (uint)q.Length);
        q.CopyTo(payload, 12 + name.Length);
        return payload;
    }

    private static NbdOptionReplyType Final(IReadOnlyList<NbdOptionReply> replies) => replies[^1].Header.Type;

    [Fact]
    public async Task Require_closes_a_client_without_fixed_newstyle_which_cannot_start_tls()
    {
        await using var server = Start(TlsMode.Require);
        using var timeout = new CancellationTokenSource(Timeout);
        using var socket = new System.Net.Sockets.Socket(System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp);
        await socket.ConnectAsync(new IPEndPoint(IPAddress.Loopback, server.Port), timeout.Token);
        var greeting = new byte[18];
        for (var got = 0; got < greeting.Length;)
        {
            got += await socket.ReceiveAsync(greeting.AsMemory(got), timeout.Token);
        }
        await socket.SendAsync(new byte[4], timeout.Token); // client flags 0: no NBD_FLAG_C_FIXED_NEWSTYLE
        var rest = new byte[64];
        // At once: well before the handshake timeout (10 s) would close it anyway.
        using var soon = new CancellationTokenSource(TimeSpan.FromSeconds(3));
        var received = await socket.ReceiveAsync(rest, soon.Token);
        Assert.Equal(0, received); // closed, nothing sent: such a client understands no option reply
        Assert.Contains("without fixed newstyle", Log);
    }

    [Fact]
    public async Task Require_mode_refuses_every_option_but_STARTTLS_and_ABORT_with_TLS_REQD_until_TLS()
    {
        await using var server = Start(TlsMode.Require);
        await using var session = await OpenAsync(server);

        Assert.Equal(NbdOptionReplyType.ErrTlsRequired, Final(await session.SendOptionAsync(NbdOption.List)));
        Assert.Equal(NbdOptionReplyType.ErrTlsRequired, Final(await session.SendOptionAsync(NbdOption.StructuredReply)));
        Assert.Equal(NbdOptionReplyType.ErrTlsRequired, Final(await session.SendOptionAsync(NbdOption.Info, InfoPayload("disk"))));
        Assert.Equal(NbdOptionReplyType.ErrTlsRequired, Final(await session.SendOptionAsync(NbdOption.Go, InfoPayload("disk"))));
        Assert.Equal(NbdOptionReplyType.ErrTlsRequired, Final(await session.SendOptionAsync((NbdOption)999)));
        Assert.Equal(NbdOptionReplyType.Ack, Final(await session.SendOptionAsync(NbdOption.Abort)));
    }

    [Fact]
    public async Task Require_mode_closes_on_EXPORT_NAME_before_TLS_since_it_cannot_be_refused()
    {
        await using var server = Start(TlsMode.Require);
        await using var session = await OpenAsync(server);

        var option = new System.Buffers.ArrayBufferWriter<byte>();
        NbdClientMessageWriter.WriteExportNameOption(option, "disk");
        await session.SendRawAsync(option.WrittenMemory);

        using var timeout = new CancellationTokenSource(Timeout);
        Assert.True(await session.IsClosedByServerAsync(timeout.Token));
    }

    [Fact]
    public async Task Require_mode_after_STARTTLS_answers_options_over_TLS_and_refuses_a_second_STARTTLS()
    {
        await using var server = Start(TlsMode.Require);
        await using var session = await OpenAsync(server);

        Assert.Equal(NbdOptionReplyType.Ack, (await session.StartTlsAsync(ClientTls())).Header.Type);
        Assert.True(session.IsTls);
        var list = await session.SendOptionAsync(NbdOption.List);
        Assert.Equal(NbdOptionReplyType.Server, list[0].Header.Type);
        Assert.Equal(NbdOptionReplyType.Ack, Final(list));
        Assert.Equal(NbdOptionReplyType.Ack, Final(await session.SendOptionAsync(NbdOption.Info, InfoPayload("disk"))));
        var again = await session.SendOptionAsync(NbdOption.StartTls);
        Assert.Equal(NbdOptionReplyType.ErrInvalid, Final(again));
        Assert.Contains("already active", again[^1].Message);
        Assert.Equal(NbdOptionReplyType.Ack, Final(await session.SendOptionAsync(NbdOption.Abort)));
    }

    [Fact]
    public async Task On_mode_serves_plain_clients_and_TLS_clients()
    {
        await using var server = Start(TlsMode.On);
        var data = new byte[1 << 20];
        new Random(7).NextBytes(data);

        await using (var plain = await NbdClient.ConnectTcpAsync("127.0.0.1", server.Port, new NbdClientOptions { ExportName = "disk" }))
        {
            Assert.Null(plain.TlsProtocol);
            await plain.WriteAsync(0, data);
            await plain.FlushAsync();
        }
        await using var secure = await NbdClient.ConnectTcpAsync("127.0.0.1", server.Port, new NbdClientOptions { ExportName = "disk", Tls = ClientTls() });
        Assert.NotNull(secure.TlsProtocol);
        var back = new byte[data.Length];
        await secure.ReadAsync(0, back);
        Assert.Equal(data, back);
    }

    [Fact]
    public async Task Data_written_over_TLS_with_many_requests_in_flight_reads_back_over_TLS()
    {
        await using var server = Start(TlsMode.Require);
        await using var client = await NbdClient.ConnectTcpAsync("127.0.0.1", server.Port, new NbdClientOptions { ExportName = "disk", Tls = ClientTls() });
        Assert.Equal(NbdReplyStyle.Structured, client.ReplyStyle);
        var chunks = new byte[32][];
        var writes = new List<Task>();
        for (var i = 0; i < chunks.Length; i++)
        {
            chunks[i] = new byte[256 * 1024 + i];
            new Random(i).NextBytes(chunks[i]);
            writes.Add(client.WriteAsync((ulong)i * 300 * 1024, chunks[i]));
        }
        await Task.WhenAll(writes).WaitAsync(Timeout);
        var reads = new List<Task>();
        var buffers = new byte[chunks.Length][];
        for (var i = 0; i < chunks.Length; i++)
        {
            buffers[i] = new byte[chunks[i].Length];
            reads.Add(client.ReadAsync((ulong)i * 300 * 1024, buffers[i]));
        }
        await Task.WhenAll(reads).WaitAsync(Timeout);
        for (var i = 0; i < chunks.Length; i++)
        {
            Assert.Equal(chunks[i], buffers[i]);
        }
        var extents = await client.BlockStatusAsync(0, 1 << 20);
        Assert.NotEmpty(extents);
        // The socket carries ciphertext: nothing may be received in place into a payload buffer.
        Assert.Equal(0, server.Server.PayloadBytesReceivedInPlace);
    }

    [Fact]
    public async Task Off_mode_answers_STARTTLS_with_ERR_UNSUP_and_stays_usable()
    {
        await using var server = Start(TlsMode.Off);
        await using var session = await OpenAsync(server);

        Assert.Equal(NbdOptionReplyType.ErrUnsupported, (await session.StartTlsAsync(ClientTls())).Header.Type);
        Assert.False(session.IsTls);
        Assert.Equal(NbdOptionReplyType.Ack, Final(await session.SendOptionAsync(NbdOption.List)));
    }

    [Fact]
    public async Task STARTTLS_with_a_payload_is_invalid_and_the_session_continues_in_plain_text()
    {
        await using var server = Start(TlsMode.On);
        await using var session = await OpenAsync(server);

        Assert.Equal(NbdOptionReplyType.ErrInvalid, Final(await session.SendOptionAsync(NbdOption.StartTls, new byte[] { 1, 2, 3 })));
        Assert.Equal(NbdOptionReplyType.Ack, Final(await session.SendOptionAsync(NbdOption.List)));
    }

    [Fact]
    public async Task Options_sent_in_the_same_packet_after_STARTTLS_are_never_read_the_connection_closes()
    {
        await using var server = Start(TlsMode.Require);
        await using var session = await OpenAsync(server);

        // STARTTLS and a plain-text option in one write: the injection the spec's buffering warning is about.
        var packet = new System.Buffers.ArrayBufferWriter<byte>();
        NbdClientMessageWriter.WriteOption(packet, NbdOption.StartTls, default);
        NbdClientMessageWriter.WriteOption(packet, NbdOption.StructuredReply, default);
        await session.SendRawAsync(packet.WrittenMemory);

        using var timeout = new CancellationTokenSource(Timeout);
        Assert.True(await session.IsClosedByServerAsync(timeout.Token), "the server must close without answering either option");
        await WaitForLogAsync("data sent after NBD_OPT_STARTTLS");
    }

    [Fact]
    public async Task Structured_replies_negotiated_before_STARTTLS_do_not_carry_over()
    {
        await using var server = Start(TlsMode.On);
        await using var session = await OpenAsync(server);

        Assert.Equal(NbdOptionReplyType.Ack, Final(await session.SendOptionAsync(NbdOption.StructuredReply)));
        Assert.Equal(NbdOptionReplyType.Ack, (await session.StartTlsAsync(ClientTls())).Header.Type);
        // Meta contexts need structured replies; the plain-text agreement was forgotten, as the spec requires.
        var meta = await session.SendOptionAsync(NbdOption.SetMetaContext, MetaContextPayload("disk", "base:allocation"));
        Assert.Equal(NbdOptionReplyType.ErrInvalid, Final(meta));
        Assert.Equal(NbdOptionReplyType.Ack, Final(await session.SendOptionAsync(NbdOption.StructuredReply)));
        meta = await session.SendOptionAsync(NbdOption.SetMetaContext, MetaContextPayload("disk", "base:allocation"));
        Assert.Equal(NbdOptionReplyType.MetaContext, meta[0].Header.Type);
    }

    [Fact]
    public async Task Verify_peer_refuses_a_client_without_certificate_and_serves_one_signed_by_the_CA()
    {
        await using var server = Start(TlsMode.Require, verifyPeer: true);

        await Assert.ThrowsAnyAsync<Exception>(async () =>
        {
            await using var anonymous = await NbdClient.ConnectTcpAsync("127.0.0.1", server.Port, new NbdClientOptions { ExportName = "disk", Tls = ClientTls() });
            // TLS 1.3 may report the refusal only on the first read.
            await anonymous.ReadAsync(0, new byte[512]);
        });
        await WaitForLogAsync("the client sent no certificate");

        await using var client = await NbdClient.ConnectTcpAsync("127.0.0.1", server.Port,
            new NbdClientOptions { ExportName = "disk", Tls = ClientTls(withClientCertificate: true) });
        await client.ReadAsync(0, new byte[4096]);
    }

    [Fact]
    public async Task Client_trusting_another_CA_fails_cleanly_and_the_server_keeps_serving()
    {
        await using var server = Start(TlsMode.Require);
        using var otherCa = TestCertificateAuthority.Create("some other CA");

        await Assert.ThrowsAnyAsync<System.Security.Authentication.AuthenticationException>(async () =>
        {
            await using var _ = await NbdClient.ConnectTcpAsync("127.0.0.1", server.Port,
                new NbdClientOptions { ExportName = "disk", Tls = ClientTls(otherCa.Certificate) });
        });
        // TLS 1.3: the server may finish its side before the client rejects the certificate, so the server sees a
        // hang-up rather than a failed handshake; either way nothing escapes the session as an error.

        await using var client = await NbdClient.ConnectTcpAsync("127.0.0.1", server.Port, new NbdClientOptions { ExportName = "disk", Tls = ClientTls() });
        await client.ReadAsync(0, new byte[4096]);
        Assert.DoesNotContain("session ended with an error", Log);
    }

    [Fact]
    public async Task Stopping_the_server_ends_an_idle_TLS_connection_promptly_after_answering_its_requests()
    {
        var server = Start(TlsMode.Require);
        await using var client = await NbdClient.ConnectTcpAsync("127.0.0.1", server.Port, new NbdClientOptions { ExportName = "disk", Tls = ClientTls() });
        await client.WriteAsync(0, new byte[65536]);

        var clock = System.Diagnostics.Stopwatch.StartNew();
        await server.DisposeAsync();
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(10), $"stopping took {clock.Elapsed.TotalSeconds:F1} s with an idle TLS client");
        Assert.DoesNotContain("still busy", Log);
    }

    [Fact]
    public async Task TLS_clients_that_vanish_mid_transmission_end_only_their_own_connection_without_errors()
    {
        await using var server = Start(TlsMode.Require);
        for (var i = 0; i < 3; i++)
        {
            var client = await NbdClient.ConnectTcpAsync("127.0.0.1", server.Port, new NbdClientOptions { ExportName = "disk", Tls = ClientTls() });
            var pending = client.ReadAsync(0, new byte[4 << 20]);
            // Hang up with the reply possibly still being sent: no DISC, no TLS close_notify.
            await client.DisposeAsync();
            try
            {
                await pending;
            }
            catch (Exception ex) when (ex is IOException or ObjectDisposedException or EndOfStreamException)
            {
                // expected when the hang-up beat the reply
            }
        }
        await using var survivor = await NbdClient.ConnectTcpAsync("127.0.0.1", server.Port, new NbdClientOptions { ExportName = "disk", Tls = ClientTls() });
        await survivor.ReadAsync(0, new byte[4096]);
        await Task.Delay(200);
        Assert.DoesNotContain("session ended with an error", Log);
    }

    private async Task WaitForLogAsync(string text)
    {
        var deadline = DateTime.UtcNow + Timeout;
        while (!Log.Contains(text, StringComparison.Ordinal))
        {
            Assert.True(DateTime.UtcNow < deadline, $"no log line with '{text}' within {Timeout.TotalSeconds} s; log:\n{Log}");
            await Task.Delay(20);
        }
    }
}
