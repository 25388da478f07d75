using NbdQcow.Tests.Interop.Infrastructure;

namespace NbdQcow.Tests.Interop.Cli;

/// <summary>
/// The server's log on stderr: plain "nbdqcow: LEVEL: message" lines, sd-daemon priority prefixes when stderr is the
/// journal stream systemd named in JOURNAL_STREAM, --quiet and --verbose levels, and -V for the version.
/// </summary>
public sealed class ServerLoggingTests
{
    private const string StoppingLine = "nbdqcow: info: stopping: finishing in-flight requests, flushing exports";

    /// <summary>
    /// Serves a fresh image, connects once when it listens (its pid file appears), and stops it with SIGTERM so the
    /// "stopping" line is logged. With <paramref name="journalStream"/>, JOURNAL_STREAM names the very pipe stderr is
    /// (as systemd does for a unit's stderr): its inode, read by stat inside the shell that then execs the server.
    /// </summary>
    private static async Task<ToolResult> ServeBrieflyAsync(bool journalStream, params string[] options)
    {
        await ServerProcess.EnsureLauncherBuiltAsync();
        using var folder = new TempDirectory("logging");
        var port = FreeTcpPort.Find();
        var pidFile = folder.File("server.pid");
        var serve = $"'{RepositoryRoot.Launcher}' serve '{folder.File("disk.img")}' --create 1M --listen 127.0.0.1:{port} --pid-file '{pidFile}' {string.Join(' ', options)}";
        var script = journalStream
            ? $"JOURNAL_STREAM=0:$(stat -L -c %i /proc/self/fd/2) exec {serve}"
            : $"JOURNAL_STREAM=0:1 exec {serve}"; // set, but not this stderr: plain lines
        var shell = ToolRunner.RunAsync("sh", ["-c", script], TimeSpan.FromSeconds(60));
        for (var i = 0; i < 300 && !File.Exists(pidFile) && !shell.IsCompleted; i++) await Task.Delay(100);
        Assert.True(File.Exists(pidFile), "the server did not start listening within 30 s");
        // One connection, so --verbose has something to say; then SIGTERM.
        using (var client = new System.Net.Sockets.TcpClient())
        {
            await client.ConnectAsync("127.0.0.1", port);
        }
        await Task.Delay(200);
        var pid = File.ReadAllText(pidFile).Trim();
        (await ToolRunner.RunAsync("kill", ["-TERM", pid])).EnsureSuccess();
        var result = await shell;
        Assert.True(result.ExitCode == 0, result.Describe("exit code after SIGTERM"));
        return result;
    }

    [Fact]
    public async Task Under_systemd_every_line_starts_with_its_sd_daemon_priority_and_carries_no_timestamp()
    {
        var result = await ServeBrieflyAsync(journalStream: true, "--verbose");
        var lines = result.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Contains("<6>" + StoppingLine, lines);
        Assert.Contains(lines, line => line.StartsWith("<7>nbdqcow: debug: ", StringComparison.Ordinal) && line.Contains("connected"));
        Assert.All(lines, line => Assert.Matches(@"^<[2-7]>nbdqcow: (debug|info|warning|error|critical): ", line));
    }

    [Fact]
    public async Task Without_the_journal_lines_are_plain_and_quiet_drops_info_lines()
    {
        var plain = await ServeBrieflyAsync(journalStream: false);
        Assert.Contains(StoppingLine, plain.Stderr.Split('\n'));
        Assert.DoesNotContain("<6>", plain.Stderr);
        Assert.DoesNotContain("nbdqcow: debug:", plain.Stderr);

        var quiet = await ServeBrieflyAsync(journalStream: false, "--quiet");
        Assert.DoesNotContain("nbdqcow: info:", quiet.Stderr);
        Assert.Contains("nbdqcow: listening on", quiet.Stdout);
    }

    [Fact]
    public async Task Dash_capital_v_prints_the_same_version_as_double_dash_version()
    {
        await ServerProcess.EnsureLauncherBuiltAsync();
        var longForm = (await ToolRunner.RunAsync(RepositoryRoot.Launcher, ["--version"], TimeSpan.FromSeconds(60))).EnsureSuccess();
        var shortForm = (await ToolRunner.RunAsync(RepositoryRoot.Launcher, ["-V"], TimeSpan.FromSeconds(60))).EnsureSuccess();
        Assert.NotEqual("", longForm.Stdout.Trim());
        Assert.Equal(longForm.Stdout, shortForm.Stdout);
    }
}
