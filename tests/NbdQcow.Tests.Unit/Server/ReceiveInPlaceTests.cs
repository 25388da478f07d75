using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using NbdQcow.Server.Exports;
using NbdQcow.Server.Nbd;

namespace NbdQcow.Tests.Unit.Server;

/// <summary>
/// A WRITE payload received in place (the receive pipe filling the payload buffer itself) that the client abandons
/// half-way: the socket loop may still receive into that buffer, so it must not go back to the buffer pool, where
/// the next request would get it.
/// </summary>
public sealed class ReceiveInPlaceTests
{
    private const int Mib = 1 << 20;

    [Fact]
    public async Task A_payload_abandoned_after_it_was_received_in_place_does_not_go_back_to_the_buffer_pool()
    {
        var options = new NbdSessionOptions();
        await using var server = InProcessServer.Start(options, new NbdExport("disk", new MemoryBlockDevice(64L * Mib)));
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        await socket.ConnectAsync(new IPEndPoint(IPAddress.Loopback, server.Port));
        await HandshakeAsync(socket);

        // A 4 MiB WRITE of which only half is sent: once the pipe is drained, the rest is lent to the pipe.
        var request = new byte[28];
        BinaryPrimitives.WriteUInt32BigEndian(request, 0x25609513);
        BinaryPrimitives.WriteUInt16BigEndian(request.AsSpan(6), 1); // NBD_CMD_WRITE
        BinaryPrimitives.WriteUInt64BigEndian(request.AsSpan(8), 1);
        BinaryPrimitives.WriteUInt32BigEndian(request.AsSpan(24), 4 * Mib);
        await socket.SendAsync(request);
        await socket.SendAsync(new byte[2 * Mib]);
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        while (server.Server.PayloadBytesReceivedInPlace == 0 && DateTime.UtcNow < deadline)
        {
            await Task.Delay(10);
        }
        Assert.True(server.Server.PayloadBytesReceivedInPlace > 0, "no payload byte was received in place");

        // Reset: the session gives up the payload while the pipe still holds the lent rest of its buffer.
        socket.LingerState = new LingerOption(true, 0);
        socket.Close();
        deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        while (server.Server.ConnectionCount > 0 && DateTime.UtcNow < deadline)
        {
            await Task.Delay(10);
        }
        Assert.Equal(0, server.Server.ConnectionCount);
        Assert.True(options.Budget.Buffers.Retained < 4 * Mib,
            $"the abandoned 4 MiB payload buffer went back to the pool ({options.Budget.Buffers.Retained} bytes retained)");
        Assert.Equal(0, options.Budget.Used);
    }

    /// <summary>Fixed newstyle with NO_ZEROES, then NBD_OPT_EXPORT_NAME of the default export.</summary>
    private static async Task HandshakeAsync(Socket socket)
    {
        await ReceiveExactlyAsync(socket, 18); // NBDMAGIC, IHAVEOPT, handshake flags
        var flags = new byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(flags, 3); // FIXED_NEWSTYLE | NO_ZEROES
        await socket.SendAsync(flags);
        var option = new byte[16];
        BinaryPrimitives.WriteUInt64BigEndian(option, 0x49484156454F5054);
        BinaryPrimitives.WriteUInt32BigEndian(option.AsSpan(8), 1); // NBD_OPT_EXPORT_NAME, empty name
        await socket.SendAsync(option);
        await ReceiveExactlyAsync(socket, 10); // export size and transmission flags
    }

    private static async Task ReceiveExactlyAsync(Socket socket, int count)
    {
        var buffer = new byte[count];
        var received = 0;
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        while (received < count)
        {
            var n = await socket.ReceiveAsync(buffer.AsMemory(received), timeout.Token);
            Assert.True(n > 0, "the server closed the connection during the handshake");
            received += n;
        }
    }
}
