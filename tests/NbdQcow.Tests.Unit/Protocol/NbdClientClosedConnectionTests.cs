using NbdQcow.Server.Exports;
using NbdQcow.Tests.Unit.Server;

namespace NbdQcow.Tests.Unit.Protocol;

/// <summary>
/// Requests on a connection the server has closed fail at once. Found by the soak: after a server's SIGTERM, a
/// request sent once the client's receive loop had seen the end of the stream was written into the dead socket
/// (the first write after the peer's close succeeds) and waited for a reply forever.
/// </summary>
public sealed class NbdClientClosedConnectionTests
{
    [Fact]
    public async Task Request_after_the_server_closed_the_connection_fails_instead_of_waiting_forever()
    {
        var server = InProcessServer.Start(new NbdExport("disk", new MemoryBlockDevice(1 << 20)));
        await using var client = await server.ConnectAsync();
        await client.ReadAsync(0, new byte[4096]);

        await server.DisposeAsync(); // stops the server: it closes the connection
        await Task.Delay(500);       // the client's receive loop sees the end of the stream

        var error = await Record.ExceptionAsync(() => client.ReadAsync(0, new byte[4096]).WaitAsync(TimeSpan.FromSeconds(10)));
        Assert.IsAssignableFrom<IOException>(error);
    }
}
