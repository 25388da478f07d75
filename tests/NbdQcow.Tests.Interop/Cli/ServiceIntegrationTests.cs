using System.Diagnostics;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text;
using NbdQcow.Tests.Interop.Infrastructure;

namespace NbdQcow.Tests.Interop.Cli;

/// <summary>serve as a service: --fork, --pid-file, systemd socket activation (LISTEN_FDS) and sd_notify (NOTIFY_SOCKET).</summary>
public sealed class ServiceIntegrationTests
{
    private const long Mib = 1 << 20;
    private const int SigTerm = 15;
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task ForkReturnsOnceListeningWritesThePidFileAndTheServerRemovesItAtExit()
    {
        await ServerProcess.EnsureLauncherBuiltAsync();
        using var folder = new TempDirectory("fork");
        var image = folder.File("disk.img");
        await File.WriteAllBytesAsync(image, new byte[16 * Mib]);
        var pidFile = folder.File("server.pid");
        var port = FreeTcpPort.Find();
        var fork = await ToolRunner.RunAsync(RepositoryRoot.Launcher,
            ["serve", image, "--listen", $"127.0.0.1:{port}", "--fork", "--pid-file", pidFile], Bound);
        // The parent returned: the server must already listen and have written its pid.
        var pid = File.Exists(pidFile) ? int.Parse(File.ReadAllText(pidFile).Trim()) : 0;
        try
        {
            fork.EnsureSuccess("serve --fork");
            Assert.True(pid > 0, "no pid file once serve --fork returned");
            Assert.Contains("listening on", fork.Stdout);
            var size = (await ToolRunner.RunAsync("nbdinfo", ["--size", $"nbd://127.0.0.1:{port}/"])).EnsureSuccess("nbdinfo on the forked server");
            Assert.Equal((16 * Mib).ToString(), size.Stdout.Trim());
            Assert.NotEqual(getsid(0), getsid(pid)); // detached: its own session
        }
        finally
        {
            // Stop the detached server even when an assertion failed: nothing else would.
            if (pid > 0) _ = kill(pid, SigTerm);
        }
        var clock = Stopwatch.StartNew();
        while (File.Exists(pidFile) && clock.Elapsed < Bound) await Task.Delay(50);
        Assert.False(File.Exists(pidFile), "the pid file stays after SIGTERM");
    }

    [Fact]
    public async Task ForkExitsWithTheServersErrorWhenItCannotStart()
    {
        await ServerProcess.EnsureLauncherBuiltAsync();
        using var folder = new TempDirectory("fork");
        var pidFile = folder.File("server.pid");
        var fork = await ToolRunner.RunAsync(RepositoryRoot.Launcher,
            ["serve", folder.File("missing.img"), "--listen", $"127.0.0.1:{FreeTcpPort.Find()}", "--fork", "--pid-file", pidFile], Bound);
        Assert.NotEqual(0, fork.ExitCode);
        Assert.Contains("missing.img", fork.Stderr);
        Assert.False(File.Exists(pidFile));
    }

    [Fact]
    public async Task APidFilePathNamingTheImageOrAnyOtherFileIsRefusedAndTheFileKept()
    {
        await ServerProcess.EnsureLauncherBuiltAsync();
        using var folder = new TempDirectory("pidfile");
        var image = folder.File("disk.qcow2");
        await QemuImage.CreateQcow2Async(image, "16M");
        await QemuImage.IoAsync(image, "qcow2", "write -P 0x5a 0 64k");
        byte[] before = await File.ReadAllBytesAsync(image);
        // The image as its own pid file: replaced once listening, deleted at exit, the disk gone.
        var own = await ToolRunner.RunAsync(RepositoryRoot.Launcher,
            ["serve", image, "--listen", "off", "--socket", folder.File("s.sock"), "--pid-file", image], Bound);
        Assert.Equal(1, own.ExitCode);
        Assert.Contains("is not a pid file", own.Stderr);
        Assert.Equal(before, await File.ReadAllBytesAsync(image));
        // An image --create makes at the pid file's path, after the first look found nothing there.
        var created = folder.File("new.img");
        var create = await ToolRunner.RunAsync(RepositoryRoot.Launcher,
            ["serve", created, "--create", "16M", "--listen", "off", "--socket", folder.File("t.sock"), "--pid-file", created], Bound);
        Assert.Equal(1, create.ExitCode);
        Assert.True(File.Exists(created) && new FileInfo(created).Length == 16 * Mib, "the created image was replaced or deleted");
        // A stale pid file (a number) is replaced as before, and removed at exit.
        var stale = folder.File("stale.pid");
        await File.WriteAllTextAsync(stale, "4242\n");
        var fork = await ToolRunner.RunAsync(RepositoryRoot.Launcher,
            ["serve", image, "--listen", "off", "--socket", folder.File("u.sock"), "--fork", "--pid-file", stale], Bound);
        Assert.Equal(0, fork.ExitCode);
        int pid = int.Parse((await File.ReadAllTextAsync(stale)).Trim());
        Assert.NotEqual(4242, pid);
        _ = kill(pid, SigTerm);
        var clock = Stopwatch.StartNew();
        while (File.Exists(stale) && clock.Elapsed < Bound) await Task.Delay(50);
        Assert.False(File.Exists(stale));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task SocketActivationServesOnTheHandedOverSocket(bool unix)
    {
        await ServerProcess.EnsureLauncherBuiltAsync();
        using var folder = new TempDirectory("activate");
        var image = folder.File("disk.img");
        await File.WriteAllBytesAsync(image, new byte[8 * Mib]);
        var port = FreeTcpPort.Find();
        var socketPath = folder.File("nbd.sock");
        var address = unix ? socketPath : $"127.0.0.1:{port}";
        var uri = unix ? $"nbd+unix:///?socket={socketPath}" : $"nbd://127.0.0.1:{port}/";
        var start = new ProcessStartInfo(ToolRunner.Locate("systemd-socket-activate"))
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var argument in new[] { "-l", address, RepositoryRoot.Launcher, "serve", image }) start.ArgumentList.Add(argument);
        var output = new StringBuilder();
        var bound = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using var process = new Process { StartInfo = start };
        DataReceivedEventHandler collect = (_, line) =>
        {
            if (line.Data is null) return;
            lock (output) output.AppendLine(line.Data);
            if (line.Data.StartsWith("Listening on", StringComparison.Ordinal)) bound.TrySetResult();
        };
        process.OutputDataReceived += collect;
        process.ErrorDataReceived += collect;
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        try
        {
            await bound.Task.WaitAsync(Bound);
            // The socket exists before the server: the first connection starts it.
            var size = (await ToolRunner.RunAsync("nbdinfo", ["--size", uri], Bound)).EnsureSuccess("nbdinfo through socket activation");
            Assert.Equal((8 * Mib).ToString(), size.Stdout.Trim());
        }
        finally
        {
            _ = kill(process.Id, SigTerm);
            if (!process.WaitForExit(Bound)) process.Kill();
        }
        process.WaitForExit();
        var text = output.ToString();
        Assert.True(process.ExitCode == 0, text);
        Assert.Contains("(socket activation)", text);
        Assert.DoesNotContain("10809", text);
    }

    [Fact]
    public async Task NotifySocketReceivesReadyOnceListeningAndStoppingOnShutdown()
    {
        var name = $"nbdqcow-notify-test-{Guid.NewGuid():N}";
        using var listener = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint("\0" + name));
        using var folder = new TempDirectory("notify");
        var image = folder.File("disk.img");
        await File.WriteAllBytesAsync(image, new byte[4 * Mib]);
        await using var server = await ServerProcess.StartAsync(new ServeOptions
        {
            ImagePath = image,
            Environment = new Dictionary<string, string> { ["NOTIFY_SOCKET"] = "@" + name },
        });
        Assert.Equal("READY=1", await ReceiveAsync(listener));
        await server.StopAndAssertCleanExitAsync();
        Assert.Equal("STOPPING=1", await ReceiveAsync(listener));
    }

    private static async Task<string> ReceiveAsync(Socket socket)
    {
        var buffer = new byte[256];
        using var timeout = new CancellationTokenSource(Bound);
        var length = await socket.ReceiveAsync(buffer, SocketFlags.None, timeout.Token);
        return Encoding.UTF8.GetString(buffer, 0, length).Trim();
    }

    [DllImport("libc", SetLastError = true)]
    private static extern int kill(int pid, int signal);

    [DllImport("libc", SetLastError = true)]
    private static extern int getsid(int pid);
}
