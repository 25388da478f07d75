using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;

namespace NbdQcow.Tests.Interop.Infrastructure;

/// <summary>
/// A hand-driven NBD client on a plain socket, written from the spec (NetworkBlockDevice/nbd doc/proto.md)
/// independently of the project's protocol code, for sending exactly the bytes a test wants (including garbage).
/// Every receive is bounded.
/// </summary>
public sealed class RawNbdConnection : IDisposable
{
    public const ulong NbdMagic = 0x4e42444d41474943; // "NBDMAGIC"
    public const ulong OptionMagic = 0x49484156454f5054; // "IHAVEOPT"
    public const uint RequestMagic = 0x25609513;
    public const uint SimpleReplyMagic = 0x67446698;
    public const uint ClientFlagFixedNewstyle = 1;
    public const uint ClientFlagNoZeroes = 2;
    public const uint OptionExportName = 1;
    public const ushort CommandRead = 0;
    public const ushort CommandDisconnect = 2;

    private static readonly TimeSpan ReceiveTimeout = TimeSpan.FromSeconds(10);
    private readonly Socket socket;

    private RawNbdConnection(Socket socket) => this.socket = socket;

    /// <param name="receiveBufferSize">SO_RCVBUF set before connecting (0: the kernel's default); a small one makes
    /// a slow reader's pace show at the server instead of being absorbed by a large TCP window.</param>
    public static async Task<RawNbdConnection> ConnectAsync(int port, int receiveBufferSize = 0)
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        if (receiveBufferSize > 0)
        {
            socket.ReceiveBufferSize = receiveBufferSize;
        }
        using var timeout = new CancellationTokenSource(ReceiveTimeout);
        await socket.ConnectAsync(new IPEndPoint(IPAddress.Loopback, port), timeout.Token);
        return new RawNbdConnection(socket);
    }

    /// <summary>Reads the 18-byte newstyle greeting and returns the handshake flags.</summary>
    public async Task<ushort> ReadGreetingAsync()
    {
        var greeting = await ReceiveExactlyAsync(18);
        Assert.Equal(NbdMagic, BinaryPrimitives.ReadUInt64BigEndian(greeting));
        Assert.Equal(OptionMagic, BinaryPrimitives.ReadUInt64BigEndian(greeting.AsSpan(8)));
        return BinaryPrimitives.ReadUInt16BigEndian(greeting.AsSpan(16));
    }

    /// <summary>Fixed newstyle with NO_ZEROES, then NBD_OPT_EXPORT_NAME; returns the export size.</summary>
    public async Task<ulong> HandshakeWithExportNameAsync(string exportName = "")
    {
        await ReadGreetingAsync();
        var flags = new byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(flags, ClientFlagFixedNewstyle | ClientFlagNoZeroes);
        await SendAsync(flags);
        var name = System.Text.Encoding.UTF8.GetBytes(exportName);
        var option = new byte[16 + name.Length];
        BinaryPrimitives.WriteUInt64BigEndian(option, OptionMagic);
        BinaryPrimitives.WriteUInt32BigEndian(option.AsSpan(8), OptionExportName);
        BinaryPrimitives.WriteUInt32BigEndian(option.AsSpan(12), (uint)name.Length);
        name.CopyTo(option, 16);
        await SendAsync(option);
        var reply = await ReceiveExactlyAsync(10);
        return BinaryPrimitives.ReadUInt64BigEndian(reply);
    }

    /// <summary>Sends a simple READ and returns (error, data); expects a simple reply (no structured replies asked).</summary>
    public async Task<(uint Error, byte[] Data)> ReadAsync(ulong offset, uint length, ulong cookie)
    {
        await SendAsync(Request(CommandRead, cookie, offset, length));
        var header = await ReceiveExactlyAsync(16);
        Assert.Equal(SimpleReplyMagic, BinaryPrimitives.ReadUInt32BigEndian(header));
        var error = BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(4));
        Assert.Equal(cookie, BinaryPrimitives.ReadUInt64BigEndian(header.AsSpan(8)));
        return (error, error == 0 ? await ReceiveExactlyAsync((int)length) : []);
    }

    /// <summary>
    /// Waits for a simple reply header (returns its error and cookie) or for the server to close the connection
    /// (returns null); fails the test if neither happens within <paramref name="timeout"/>.
    /// </summary>
    public async Task<(uint Error, ulong Cookie)?> TryReadSimpleReplyOrCloseAsync(TimeSpan timeout)
    {
        var header = new byte[16];
        var received = 0;
        using var deadline = new CancellationTokenSource(timeout);
        try
        {
            while (received < header.Length)
            {
                var n = await socket.ReceiveAsync(header.AsMemory(received), SocketFlags.None, deadline.Token);
                if (n == 0)
                {
                    return null;
                }

                received += n;
            }
        }
        catch (SocketException)
        {
            return null;
        }
        catch (OperationCanceledException)
        {
            Assert.Fail($"no reply and no disconnect within {timeout.TotalSeconds:F0} s ({received} bytes received)");
        }

        Assert.Equal(SimpleReplyMagic, BinaryPrimitives.ReadUInt32BigEndian(header));
        return (BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(4)), BinaryPrimitives.ReadUInt64BigEndian(header.AsSpan(8)));
    }

    public Task DisconnectAsync() => SendAsync(Request(CommandDisconnect, 0, 0, 0));

    public static byte[] Request(ushort type, ulong cookie, ulong offset, uint length, ushort flags = 0)
    {
        var request = new byte[28];
        BinaryPrimitives.WriteUInt32BigEndian(request, RequestMagic);
        BinaryPrimitives.WriteUInt16BigEndian(request.AsSpan(4), flags);
        BinaryPrimitives.WriteUInt16BigEndian(request.AsSpan(6), type);
        BinaryPrimitives.WriteUInt64BigEndian(request.AsSpan(8), cookie);
        BinaryPrimitives.WriteUInt64BigEndian(request.AsSpan(16), offset);
        BinaryPrimitives.WriteUInt32BigEndian(request.AsSpan(24), length);
        return request;
    }

    public async Task SendAsync(ReadOnlyMemory<byte> data)
    {
        using var timeout = new CancellationTokenSource(ReceiveTimeout);
        while (!data.IsEmpty)
        {
            var sent = await socket.SendAsync(data, SocketFlags.None, timeout.Token);
            data = data[sent..];
        }
    }

    /// <summary>
    /// Sends bytes the server may refuse part-way: a reset or broken pipe is an acceptable answer to garbage.
    /// Returns false if the server had already closed the connection.
    /// </summary>
    public async Task<bool> TrySendAsync(ReadOnlyMemory<byte> data)
    {
        try
        {
            await SendAsync(data);
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
        catch (OperationCanceledException)
        {
            // The server neither read nor closed; the caller's next bounded wait reports that clearly.
            return false;
        }
    }

    /// <summary>True if the server closes the connection (EOF or reset) within <paramref name="timeout"/>; discards data.</summary>
    public async Task<bool> WaitForServerCloseAsync(TimeSpan timeout)
    {
        var buffer = new byte[4096];
        using var deadline = new CancellationTokenSource(timeout);
        try
        {
            while (true)
            {
                if (await socket.ReceiveAsync(buffer, SocketFlags.None, deadline.Token) == 0)
                {
                    return true;
                }
            }
        }
        catch (SocketException)
        {
            return true;
        }
        catch (OperationCanceledException)
        {
            return false;
        }
    }

    /// <summary>
    /// Everything the server sends until it closes the connection, or null if it has not closed within
    /// <paramref name="timeout"/>.
    /// </summary>
    public async Task<byte[]?> ReceiveUntilCloseAsync(TimeSpan timeout)
    {
        var received = new MemoryStream();
        var buffer = new byte[4096];
        using var deadline = new CancellationTokenSource(timeout);
        try
        {
            while (true)
            {
                var n = await socket.ReceiveAsync(buffer, SocketFlags.None, deadline.Token);
                if (n == 0)
                {
                    return received.ToArray();
                }

                received.Write(buffer, 0, n);
            }
        }
        catch (SocketException)
        {
            return received.ToArray();
        }
        catch (OperationCanceledException)
        {
            return null;
        }
    }

    public async Task<byte[]> ReceiveExactlyAsync(int length)
    {
        var buffer = new byte[length];
        using var timeout = new CancellationTokenSource(ReceiveTimeout);
        var received = 0;
        while (received < length)
        {
            var n = await socket.ReceiveAsync(buffer.AsMemory(received), SocketFlags.None, timeout.Token);
            if (n == 0)
            {
                Assert.Fail($"server closed the connection after {received} of {length} expected bytes");
            }

            received += n;
        }

        return buffer;
    }

    /// <summary>
    /// Receives at most <paramref name="buffer"/>'s length; 0 when the server closed the connection (or reset it),
    /// -1 when nothing arrived within <paramref name="timeout"/>.
    /// </summary>
    public async Task<int> ReceiveSomeAsync(Memory<byte> buffer, TimeSpan timeout)
    {
        using var deadline = new CancellationTokenSource(timeout);
        try
        {
            return await socket.ReceiveAsync(buffer, SocketFlags.None, deadline.Token);
        }
        catch (SocketException)
        {
            return 0;
        }
        catch (OperationCanceledException)
        {
            return -1;
        }
    }

    /// <summary>Ends the connection with a TCP reset (linger 0) instead of an orderly close, as a killed peer's host may.</summary>
    public void Reset()
    {
        socket.LingerState = new System.Net.Sockets.LingerOption(true, 0);
        socket.Dispose();
    }

    public void Dispose() => socket.Dispose();
}
