using NbdQcow.Tests.Interop.Infrastructure;

namespace NbdQcow.Tests.Interop.Cli;

/// <summary>
/// --metrics: a real server serves Prometheus text on 127.0.0.1; real clients (libnbd, qemu-io, nbdinfo) do I/O and
/// the scraped numbers move by exactly what they did.
/// </summary>
public sealed class MetricsEndpointTests
{
    [Fact]
    public async Task Requests_bytes_flushes_errors_and_the_unflushed_window_are_served_for_prometheus()
    {
        var metricsPort = FreeTcpPort.Find();
        var metricsUrl = $"http://127.0.0.1:{metricsPort}/metrics";
        await using var image = await ServedImage.StartAsync(path => QemuImage.CreateQcow2Async(path, "64M"), "disk.qcow2",
            new ServeOptions { ExtraArguments = ["--metrics", $"127.0.0.1:{metricsPort}", "--max-dirty-age", "off"] });
        // The listening line names the endpoint (its capture may trail the NBD greeting the start waited for).
        for (var i = 0; i < 50 && !image.Server.Output.Contains($"metrics {metricsUrl}", StringComparison.Ordinal); i++) await Task.Delay(100);
        Assert.Contains($"metrics {metricsUrl}", image.Server.Output);

        // libnbd: writes, a read, the unflushed bytes and their age, a FLUSH that clears them, an EINVAL.
        (await ToolRunner.RunPythonScriptAsync("metrics_io.py", [image.Uri(), metricsUrl, "disk"]))
            .EnsureSuccess(image.Server.Describe());

        // qemu-io: one 256 KiB write; it flushes before it disconnects.
        var before = await PrometheusText.ScrapeAsync(metricsUrl);
        (await ToolRunner.RunAsync("qemu-io", ["-f", "raw", "-c", "write -P 0x5a 1M 256k", image.Uri()])).EnsureSuccess(image.Server.Describe());
        // A request is counted just after its reply is sent: give the last one a moment (bounded).
        var after = await PrometheusText.ScrapeAsync(metricsUrl);
        for (var i = 0; i < 40 && Delta(before, after, "nbdqcow_requests_total", "export=disk", "command=flush") < 1; i++)
        {
            await Task.Delay(50);
            after = await PrometheusText.ScrapeAsync(metricsUrl);
        }
        Assert.Equal(256 * 1024, Delta(before, after, "nbdqcow_request_bytes_total", "export=disk", "command=write"));
        Assert.True(Delta(before, after, "nbdqcow_flushes_total", "export=disk") >= 1, after.Text);
        Assert.Equal(0, after.Value("nbdqcow_dirty_bytes", "export=disk"));

        // nbdinfo: one more connection, accepted and closed.
        (await ToolRunner.RunAsync("nbdinfo", [image.Uri()])).EnsureSuccess(image.Server.Describe());
        var last = await PrometheusText.ScrapeAsync(metricsUrl);
        Assert.True(last.Value("nbdqcow_connections_accepted_total") >= 3, last.Text);
        Assert.Equal(0, last.Value("nbdqcow_connections_refused_total") ?? 0);

        // A second server asking for the same metrics address fails to start and says why.
        var second = await ToolRunner.RunAsync(RepositoryRoot.Launcher,
            ["serve", image.Folder.File("second.img"), "--create", "1M", "--listen", $"127.0.0.1:{FreeTcpPort.Find()}", "--metrics", $"127.0.0.1:{metricsPort}"],
            TimeSpan.FromSeconds(60));
        Assert.True(second.ExitCode == 1, second.Describe("exit code"));
        Assert.Contains($"metrics: cannot listen on 127.0.0.1:{metricsPort}", second.Stderr);
        Assert.Contains("Address already in use", second.Stderr);

        await image.Server.StopAndAssertCleanExitAsync();
    }

    [Theory]
    [InlineData("example.com:9464")]
    [InlineData("127.0.0.1")]
    [InlineData("127.0.0.1:0")]
    public async Task A_metrics_address_that_is_not_an_ip_or_localhost_with_a_port_is_refused_with_exit_2(string address)
    {
        await ServerProcess.EnsureLauncherBuiltAsync();
        using var folder = new TempDirectory("metrics");
        var result = await ToolRunner.RunAsync(RepositoryRoot.Launcher,
            ["serve", folder.File("disk.img"), "--create", "1M", "--listen", $"127.0.0.1:{FreeTcpPort.Find()}", "--metrics", address],
            TimeSpan.FromSeconds(60));
        Assert.True(result.ExitCode == 2, result.Describe("exit code"));
        Assert.Contains($"Metrics: '{address}' is not allowed", result.Stderr);
    }

    private static double Delta(PrometheusText before, PrometheusText after, string name, params string[] labels) =>
        (after.Value(name, labels) ?? 0) - (before.Value(name, labels) ?? 0);
}
