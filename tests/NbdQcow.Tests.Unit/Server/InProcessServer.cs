using System.Net;
using NbdQcow.Protocol.Client;
using NbdQcow.Server.Exports;
using NbdQcow.Server.Nbd;

namespace NbdQcow.Tests.Unit.Server;

/// <summary>An NbdServer in the test process on 127.0.0.1 with a free port, serving the given exports.</summary>
public sealed class InProcessServer : IAsyncDisposable
{
    private InProcessServer(ExportRegistry registry, NbdServer server, int port)
    {
        Registry = registry;
        Server = server;
        Port = port;
    }

    public ExportRegistry Registry { get; }

    public NbdServer Server { get; }

    public int Port { get; }

    public static InProcessServer Start(params NbdExport[] exports) => Start(new NbdSessionOptions(), exports);

    public static InProcessServer Start(NbdSessionOptions options, params NbdExport[] exports)
    {
        var registry = new ExportRegistry();
        foreach (var export in exports)
        {
            registry.Add(export);
        }
        var server = new NbdServer(registry, options);
        var bound = server.ListenTcp(new IPEndPoint(IPAddress.Loopback, 0));
        return new InProcessServer(registry, server, bound.Port);
    }

    public Task<NbdClient> ConnectAsync(NbdClientOptions? options = null)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        return NbdClient.ConnectTcpAsync("127.0.0.1", Port, options ?? new NbdClientOptions(), timeout.Token);
    }

    public async ValueTask DisposeAsync()
    {
        await Server.StopAsync(TimeSpan.FromSeconds(20));
        await Registry.DisposeAsync();
    }
}
