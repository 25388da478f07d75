using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text;

namespace NbdQcow.Tests.Interop.Infrastructure;

/// <summary>
/// One real server process started through the repository's launcher:
/// `./nbdqcow serve IMAGE --listen 127.0.0.1:PORT ...` (a free port) or `--socket DIR/nbd.sock` (a unique folder).
/// <see cref="StartAsync"/> returns once the server sends the NBD greeting (bounded wait); stdout and stderr are
/// captured for failure messages. <see cref="StopAsync"/> sends SIGTERM, waits (bounded), then SIGKILL by PID.
/// Disposing stops it the same way; call <see cref="StopAndAssertCleanExitAsync"/> to require exit code 0.
/// </summary>
public sealed class ServerProcess : IAsyncDisposable
{
    private const int SigKill = 9;
    private const int SigTerm = 15;
    private const int MaxCapturedChars = 1 << 20;
    private static readonly TimeSpan BuildTimeout = TimeSpan.FromMinutes(10);
    private static readonly SemaphoreSlim BuildOnce = new(1, 1);
    private static bool built;

    private readonly Process process;
    private readonly StringBuilder output = new();
    private readonly TempDirectory? socketDirectory;
    private int? exitCode;

    private ServerProcess(Process process, string commandLine, int? port, string? socketPath,
        TempDirectory? socketDirectory)
    {
        this.process = process;
        CommandLine = commandLine;
        Port = port;
        SocketPath = socketPath;
        this.socketDirectory = socketDirectory;
    }

    public string CommandLine { get; }

    /// <summary>The TCP port on 127.0.0.1, or null for a Unix-socket server.</summary>
    public int? Port { get; }

    /// <summary>The Unix socket path, or null for a TCP server.</summary>
    public string? SocketPath { get; }

    public int ProcessId => process.Id;

    public bool HasExited => process.HasExited;

    /// <summary>Everything the server wrote to stdout and stderr so far (the last MiB).</summary>
    public string Output
    {
        get
        {
            lock (output)
            {
                return output.ToString();
            }
        }
    }

    /// <summary>
    /// The NBD URI of an export: nbd://127.0.0.1:PORT/NAME or nbd+unix:///NAME?socket=PATH.
    /// The empty name is the default export.
    /// </summary>
    public string Uri(string exportName = "") =>
        SocketPath is null
            ? $"nbd://127.0.0.1:{Port}/{exportName}"
            : $"nbd+unix:///{exportName}?socket={SocketPath}";

    /// <summary>Starts the server and waits until it accepts connections. Retries on a port taken meanwhile.</summary>
    public static async Task<ServerProcess> StartAsync(ServeOptions options)
    {
        await EnsureLauncherBuiltAsync();
        const int attempts = 3;
        for (var attempt = 1; ; attempt++)
        {
            var server = Launch(options);
            try
            {
                await server.WaitUntilReadyAsync(options.ReadyTimeout);
                return server;
            }
            catch (ServerExitedEarlyException) when (attempt < attempts && !options.UnixSocket)
            {
                // Another process may have taken the free port between our probe and the server's bind.
                await server.DisposeAsync();
            }
            catch
            {
                await server.DisposeAsync();
                throw;
            }
        }
    }

    /// <summary>Starts the server on an existing image with default options.</summary>
    public static Task<ServerProcess> StartAsync(string imagePath, params string[] extraArguments) =>
        StartAsync(new ServeOptions { ImagePath = imagePath, ExtraArguments = extraArguments });

    /// <summary>
    /// Builds the Release server once per test run (the launcher builds on first use); later starts are quick.
    /// </summary>
    public static async Task EnsureLauncherBuiltAsync()
    {
        if (built)
        {
            return;
        }

        await BuildOnce.WaitAsync();
        try
        {
            if (!built)
            {
                var result = await ToolRunner.RunAsync(RepositoryRoot.Launcher, ["--help"], BuildTimeout);
                result.EnsureSuccess("building the server through ./nbdqcow");
                built = true;
            }
        }
        finally
        {
            BuildOnce.Release();
        }
    }

    /// <summary>SIGTERM, a bounded wait, then SIGKILL. Returns the exit code (128+signal if killed).</summary>
    public async Task<int> StopAsync(TimeSpan? gracePeriod = null)
    {
        if (exitCode is int known)
        {
            return known;
        }

        if (!process.HasExited)
        {
            _ = kill(process.Id, SigTerm);
            if (!await WaitForExitAsync(gracePeriod ?? TimeSpan.FromSeconds(20)))
            {
                Append("[test harness] no exit within the grace period after SIGTERM; sending SIGKILL");
                _ = kill(process.Id, SigKill);
                await WaitForExitAsync(TimeSpan.FromSeconds(10));
            }
        }

        // The parameterless wait also drains the redirected output.
        await process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(10));
        exitCode = process.ExitCode;
        return exitCode.Value;
    }

    /// <summary>Stops with SIGTERM and fails the test unless the server drained, flushed and exited 0 in time.</summary>
    public async Task StopAndAssertCleanExitAsync(TimeSpan? gracePeriod = null)
    {
        var code = await StopAsync(gracePeriod);
        if (code != 0)
        {
            Assert.Fail($"server exited with {code} after SIGTERM (expected 0)\n{Describe()}");
        }
    }

    /// <summary>Fails the test if the server has died (e.g. crashed on a request).</summary>
    public void AssertStillRunning()
    {
        if (process.HasExited)
        {
            Assert.Fail($"server exited unexpectedly with {process.ExitCode}\n{Describe()}");
        }
    }

    /// <summary>Command line, state and captured output, for failure messages.</summary>
    public string Describe() =>
        $"server: {CommandLine} (pid {process.Id}{(process.HasExited ? $", exited {process.ExitCode}" : ", running")})\n" +
        $"--- server output ---\n{Output.TrimEnd()}";

    public async ValueTask DisposeAsync()
    {
        try
        {
            await StopAsync();
        }
        finally
        {
            process.Dispose();
            socketDirectory?.Dispose();
        }
    }

    private static ServerProcess Launch(ServeOptions options)
    {
        var start = new ProcessStartInfo(RepositoryRoot.Launcher)
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = options.WorkingDirectory ?? RepositoryRoot.Path,
        };
        start.ArgumentList.Add("serve");
        if (options.ImagePath is not null)
        {
            start.ArgumentList.Add(options.ImagePath);
        }

        int? port = null;
        string? socketPath = null;
        TempDirectory? socketDirectory = null;
        if (options.UnixSocket)
        {
            socketDirectory = new TempDirectory("sock");
            socketPath = socketDirectory.File("nbd.sock");
            start.ArgumentList.Add("--socket");
            start.ArgumentList.Add(socketPath);
        }
        else
        {
            port = FreeTcpPort.Find();
            start.ArgumentList.Add("--listen");
            start.ArgumentList.Add($"127.0.0.1:{port}");
        }

        AddOption(start, "--export", options.ExportName);
        AddOption(start, "--cache", options.CacheMode);
        AddOption(start, "--create", options.CreateSize);
        AddOption(start, "--config", options.ConfigFile);
        if (options.ReadOnly)
        {
            start.ArgumentList.Add("--read-only");
        }

        foreach (var argument in options.ExtraArguments)
        {
            start.ArgumentList.Add(argument);
        }

        if (options.Environment is not null)
        {
            foreach (var (name, value) in options.Environment)
            {
                start.Environment[name] = value;
            }
        }

        var commandLine = "./nbdqcow " + string.Join(' ', start.ArgumentList);
        var process = new Process { StartInfo = start, EnableRaisingEvents = true };
        ServerProcess? server = null;
        process.OutputDataReceived += (_, e) => server?.Append(e.Data);
        process.ErrorDataReceived += (_, e) => server?.Append(e.Data);
        server = new ServerProcess(process, commandLine, port, socketPath, socketDirectory);
        if (!process.Start())
        {
            throw new InvalidOperationException($"could not start {commandLine}");
        }

        process.StandardInput.Close();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return server;
    }

    private static void AddOption(ProcessStartInfo start, string name, string? value)
    {
        if (value is not null)
        {
            start.ArgumentList.Add(name);
            start.ArgumentList.Add(value);
        }
    }

    private async Task WaitUntilReadyAsync(TimeSpan timeout)
    {
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < timeout)
        {
            if (process.HasExited)
            {
                await process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(5));
                throw new ServerExitedEarlyException(
                    $"server exited with {process.ExitCode} before accepting connections\n{Describe()}");
            }

            if (await TryReadGreetingAsync())
            {
                return;
            }

            await Task.Delay(50);
        }

        Assert.Fail($"server did not accept connections within {timeout.TotalSeconds:F0} s\n{Describe()}");
    }

    /// <summary>Connects and reads the 8-byte "NBDMAGIC" of the newstyle greeting, then hangs up.</summary>
    private async Task<bool> TryReadGreetingAsync()
    {
        using var socket = SocketPath is null
            ? new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp)
            : new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        EndPoint endPoint = SocketPath is null
            ? new IPEndPoint(IPAddress.Loopback, Port!.Value)
            : new UnixDomainSocketEndPoint(SocketPath);
        using var attempt = new CancellationTokenSource(TimeSpan.FromSeconds(5));
        try
        {
            await socket.ConnectAsync(endPoint, attempt.Token);
            var magic = new byte[8];
            var received = 0;
            while (received < magic.Length)
            {
                var n = await socket.ReceiveAsync(magic.AsMemory(received), SocketFlags.None, attempt.Token);
                if (n == 0)
                {
                    return false;
                }

                received += n;
            }

            return Encoding.ASCII.GetString(magic) == "NBDMAGIC";
        }
        catch (SocketException)
        {
            return false;
        }
        catch (OperationCanceledException)
        {
            return false;
        }
    }

    private async Task<bool> WaitForExitAsync(TimeSpan timeout)
    {
        using var deadline = new CancellationTokenSource(timeout);
        try
        {
            await process.WaitForExitAsync(deadline.Token);
            return true;
        }
        catch (OperationCanceledException)
        {
            return false;
        }
    }

    private void Append(string? line)
    {
        if (line is null)
        {
            return;
        }

        lock (output)
        {
            output.AppendLine(line);
            if (output.Length > MaxCapturedChars)
            {
                output.Remove(0, output.Length - MaxCapturedChars / 2);
            }
        }
    }

    [DllImport("libc", SetLastError = true)]
    private static extern int kill(int pid, int signal);

    private sealed class ServerExitedEarlyException(string message) : Exception(message);
}
