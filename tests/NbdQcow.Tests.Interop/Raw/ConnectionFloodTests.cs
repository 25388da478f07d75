using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using NbdQcow.Tests.Interop.Infrastructure;

namespace NbdQcow.Tests.Interop.Raw;

/// <summary>
/// Connections that never negotiate, more of them than the server may hold: the server stays up, stays quiet
/// and cool, and polite clients keep being served.
/// </summary>
public sealed class ConnectionFloodTests
{
    private const int Mib = 1 << 20;

    [Fact]
    public async Task IdleFloodPastTheDescriptorLimitKeepsServingWithBoundedCpuAndLog()
    {
        await using var image = await ServedImage.StartRawAsync(16L * Mib,
            prepare: path => RawImageFile.Write(path, 0, TestPattern.Bytes(3, Mib)));
        var pid = image.Server.ProcessId;
        // Room for about 100 more descriptors: a flood of 300 would run the server out of them (EMFILE).
        var limit = ProcessStatus.OpenDescriptors(pid) + 100;
        (await ToolRunner.RunAsync("prlimit", ["--pid", pid.ToString(), $"--nofile={limit}:{limit}"])).EnsureSuccess();

        var flood = await OpenIdleConnectionsAsync(image.Server.Port!.Value, 300);
        try
        {
            var linesBefore = CountLines(image.Server.Output);
            var cpuBefore = ProcessStatus.CpuTime(pid);
            var clock = Stopwatch.StartNew();
            // A polite client while every descriptor is taken by the flood.
            var info = await ToolRunner.RunAsync("nbdinfo", ["--size", image.Uri()], TimeSpan.FromSeconds(30));
            info.EnsureSuccess(image.Server.Describe());
            Assert.Equal((16L * Mib).ToString(), info.Stdout.Trim());
            (await ToolRunner.RunAsync("qemu-io", ["-f", "raw", "-c", "read -P 0 2M 64k", image.Uri()], TimeSpan.FromSeconds(30)))
                .EnsureSuccess(image.Server.Describe());
            await Task.Delay(TimeSpan.FromSeconds(2));
            var cpu = ProcessStatus.CpuTime(pid) - cpuBefore;
            var elapsed = clock.Elapsed;
            var lines = CountLines(image.Server.Output) - linesBefore;

            image.Server.AssertStillRunning();
            Assert.True(cpu < elapsed * 0.5,
                $"server used {cpu.TotalSeconds:F2} s of CPU in {elapsed.TotalSeconds:F2} s under an idle flood\n{image.Server.Describe()}");
            Assert.True(lines < 20, $"{lines} log lines under an idle flood\n{image.Server.Describe()}");
        }
        finally
        {
            foreach (var socket in flood)
            {
                socket.Dispose();
            }
        }

        (await ToolRunner.RunAsync("nbdinfo", ["--size", image.Uri()])).EnsureSuccess(image.Server.Describe());
        await image.Server.StopAndAssertCleanExitAsync();
    }

    [Fact]
    public async Task IdleFloodAtTheConnectionLimitClosesTheOldestNegotiatingAndAPoliteClientGetsIn()
    {
        await using var image = await ServedImage.StartRawAsync(16L * Mib, new ServeOptions
        {
            ExtraArguments = ["--max-connections", "16", "--handshake-timeout", "60"],
        });
        var port = image.Server.Port!.Value;
        // Established before the flood: past negotiation, never closed to make room.
        using var established = await RawNbdConnection.ConnectAsync(port);
        await established.HandshakeWithExportNameAsync();

        var flood = await OpenIdleConnectionsAsync(port, 200);
        try
        {
            (await ToolRunner.RunAsync("nbdinfo", ["--size", image.Uri()], TimeSpan.FromSeconds(30))).EnsureSuccess(image.Server.Describe());
            (await ToolRunner.RunAsync("qemu-io", ["-f", "raw", "-c", "write -P 0x5a 0 64k", "-c", "read -P 0x5a 0 64k", image.Uri()],
                TimeSpan.FromSeconds(30))).EnsureSuccess(image.Server.Describe());
            var (error, data) = await established.ReadAsync(0, 65536, cookie: 9);
            Assert.Equal(0u, error);
            Assert.All(data, b => Assert.Equal(0x5a, b));
            // Of the 200, at most the limit are still open on the server's side.
            var open = 0;
            foreach (var socket in flood)
            {
                if (!ClosedByPeer(socket))
                {
                    open++;
                }
            }

            Assert.True(open <= 16, $"{open} flood connections still open with --max-connections 16\n{image.Server.Describe()}");
        }
        finally
        {
            foreach (var socket in flood)
            {
                socket.Dispose();
            }
        }

        await established.DisconnectAsync();
        await image.Server.StopAndAssertCleanExitAsync();
    }

    [Fact]
    public async Task AtTheLimitWithEveryConnectionServingANewOneIsClosedAtOnce()
    {
        await using var image = await ServedImage.StartRawAsync(16L * Mib, new ServeOptions
        {
            ExtraArguments = ["--max-connections", "3"],
        });
        var port = image.Server.Port!.Value;
        var serving = new List<RawNbdConnection>();
        try
        {
            for (var i = 0; i < 3; i++)
            {
                var connection = await RawNbdConnection.ConnectAsync(port);
                serving.Add(connection);
                await connection.HandshakeWithExportNameAsync();
            }

            using (var refused = await RawNbdConnection.ConnectAsync(port))
            {
                Assert.True(await refused.WaitForServerCloseAsync(TimeSpan.FromSeconds(3)),
                    $"a connection over the limit was held open\n{image.Server.Describe()}");
            }

            foreach (var connection in serving)
            {
                Assert.Equal(0u, (await connection.ReadAsync(0, 4096, cookie: 1)).Error);
            }

            await serving[0].DisconnectAsync();
            Assert.True(await serving[0].WaitForServerCloseAsync(TimeSpan.FromSeconds(5)));
            (await ToolRunner.RunAsync("nbdinfo", ["--size", image.Uri()])).EnsureSuccess(image.Server.Describe());
        }
        finally
        {
            foreach (var connection in serving)
            {
                connection.Dispose();
            }
        }

        await image.Server.StopAndAssertCleanExitAsync();
    }

    [Fact]
    public async Task HandshakeTimeoutClosesAClientThatNeverNegotiatesButNotAnIdleServedOne()
    {
        await using var image = await ServedImage.StartRawAsync(16L * Mib, new ServeOptions
        {
            ExtraArguments = ["--handshake-timeout", "1"],
        });
        var port = image.Server.Port!.Value;
        using var served = await RawNbdConnection.ConnectAsync(port);
        await served.HandshakeWithExportNameAsync();
        using var silent = await RawNbdConnection.ConnectAsync(port);
        await silent.ReadGreetingAsync();
        var clock = Stopwatch.StartNew();
        Assert.True(await silent.WaitForServerCloseAsync(TimeSpan.FromSeconds(6)),
            $"a client that never sent its flags was kept past the handshake timeout\n{image.Server.Describe()}");
        Assert.True(clock.Elapsed > TimeSpan.FromSeconds(0.5), $"closed after {clock.Elapsed.TotalSeconds:F1} s, before the timeout");
        // Idle in transmission for longer than the handshake timeout: still served.
        Assert.Equal(0u, (await served.ReadAsync(0, 4096, cookie: 2)).Error);
        await served.DisconnectAsync();
        await image.Server.StopAndAssertCleanExitAsync();
    }

    /// <summary>Opens up to <paramref name="count"/> TCP connections that never send a byte (bounded time).</summary>
    private static async Task<List<Socket>> OpenIdleConnectionsAsync(int port, int count)
    {
        var sockets = new List<Socket>(count);
        using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        for (var i = 0; i < count; i++)
        {
            var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            sockets.Add(socket);
            try
            {
                // Past the backlog the kernel may hold a connect back; do not wait for each.
                using var attempt = CancellationTokenSource.CreateLinkedTokenSource(deadline.Token);
                attempt.CancelAfter(TimeSpan.FromMilliseconds(200));
                await socket.ConnectAsync(new IPEndPoint(IPAddress.Loopback, port), attempt.Token);
            }
            catch (Exception ex) when (ex is SocketException or OperationCanceledException)
            {
            }
        }

        return sockets;
    }

    /// <summary>True when the server has closed this connection (EOF or reset), reading past any greeting.</summary>
    private static bool ClosedByPeer(Socket socket)
    {
        var buffer = new byte[256];
        try
        {
            while (socket.Connected && socket.Poll(0, SelectMode.SelectRead))
            {
                if (socket.Receive(buffer) == 0)
                {
                    return true;
                }
            }

            return !socket.Connected;
        }
        catch (SocketException)
        {
            return true;
        }
        catch (ObjectDisposedException)
        {
            return true;
        }
    }

    private static int CountLines(string text) => text.Count(c => c == '\n');
}
