using NbdQcow.Tests.Interop.Infrastructure;

namespace NbdQcow.Tests.Interop.Raw;

/// <summary>
/// A client whose host vanished (power off, a cable pulled, a NAT that forgot the flow) leaves a half-open TCP
/// connection: no FIN, no RST, and an idle client sends nothing, so without keepalive probes the server holds its
/// slot (and any buffers) forever and enough of them fill MaxConnections. The kernel shows the probes' timer.
/// </summary>
public sealed class HalfOpenConnectionTests
{
    [Fact]
    public async Task AServedTcpConnectionCarriesKeepaliveProbesSoAVanishedClientIsDroppedWithinMinutes()
    {
        await using var image = await ServedImage.StartRawAsync(1 << 20);
        var port = image.Server.Port!.Value;
        using var connection = await RawNbdConnection.ConnectAsync(port);
        await connection.HandshakeWithExportNameAsync();
        Assert.Equal(0u, (await connection.ReadAsync(0, 4096, cookie: 1)).Error);
        // The server's side of the connection: source port = the listening port.
        // While a reply waits for its ACK the retransmission timer is shown instead: look again, a bounded number of times.
        ToolResult ss = (await ToolRunner.RunAsync("ss", ["-tnoH", "state", "established", $"( sport = :{port} )"])).EnsureSuccess();
        for (int attempt = 0; attempt < 20 && !ss.Stdout.Contains("keepalive", StringComparison.Ordinal); attempt++)
        {
            await Task.Delay(100);
            ss = (await ToolRunner.RunAsync("ss", ["-tnoH", "state", "established", $"( sport = :{port} )"])).EnsureSuccess();
        }
        Assert.True(ss.Stdout.Contains("keepalive", StringComparison.Ordinal), $"no keepalive timer on the server side:\n{ss.Stdout}{ss.Stderr}");
        // Idle 30 s, then probes every 10 s: a dead peer is dropped in about 90 s, not hours (the kernel's default idle time is 2 h).
        var timer = System.Text.RegularExpressions.Regex.Match(ss.Stdout, @"timer:\(keepalive,(?:(\d+)min)?(\d+(?:\.\d+)?)sec");
        Assert.True(timer.Success, ss.Stdout);
        double seconds = (timer.Groups[1].Success ? int.Parse(timer.Groups[1].Value) * 60 : 0) + double.Parse(timer.Groups[2].Value, System.Globalization.CultureInfo.InvariantCulture);
        Assert.True(seconds <= 30, $"keepalive fires in {seconds} s:\n{ss.Stdout}");
        await connection.DisconnectAsync();
    }
}
