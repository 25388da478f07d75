using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text;

namespace NbdQcow.Bench;

/// <summary>
/// A `nbdqcow serve` child process on 127.0.0.1 and a free port, measured from /proc (CPU time, peak RSS)
/// and stopped with SIGTERM, so the bench sees exactly what a user's server does, shutdown flush included.
/// </summary>
internal sealed partial class BenchServerProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _output = new();

    private BenchServerProcess(Process process, int port)
    {
        _process = process;
        Port = port;
    }

    public int Port { get; }

    public int Pid => _process.Id;

    public string Output
    {
        get
        {
            lock (_output)
            {
                return _output.ToString();
            }
        }
    }

    public static async Task<BenchServerProcess> StartAsync(string executable, IReadOnlyList<string> serveArguments, TimeSpan timeout, CancellationToken cancellationToken)
    {
        var port = FreeLoopbackPort();
        var start = new ProcessStartInfo(executable)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        start.ArgumentList.Add("serve");
        foreach (var argument in serveArguments)
        {
            start.ArgumentList.Add(argument);
        }
        start.ArgumentList.Add("--listen");
        start.ArgumentList.Add($"127.0.0.1:{port}");
        var process = Process.Start(start) ?? throw new InvalidOperationException($"could not start {executable}");
        var server = new BenchServerProcess(process, port);
        process.OutputDataReceived += (_, e) => server.Append(e.Data);
        process.ErrorDataReceived += (_, e) => server.Append(e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        try
        {
            await server.WaitUntilListeningAsync(timeout, cancellationToken).ConfigureAwait(false);
            return server;
        }
        catch
        {
            await server.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>User + system CPU seconds the server has used so far (all threads).</summary>
    public double CpuSeconds()
    {
        var stat = File.ReadAllText($"/proc/{Pid}/stat");
        var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        // fields[0] is stat field 3 (state); utime and stime are fields 14 and 15.
        var ticks = long.Parse(fields[11]) + long.Parse(fields[12]);
        return ticks / (double)ClockTicksPerSecond;
    }

    /// <summary>Peak resident set size (VmHWM) in bytes since start or since <see cref="ResetPeakRss"/>.</summary>
    public long PeakRssBytes()
    {
        foreach (var line in File.ReadLines($"/proc/{Pid}/status"))
        {
            if (line.StartsWith("VmHWM:", StringComparison.Ordinal))
            {
                return long.Parse(line.AsSpan(6).Trim().ToString().Split(' ')[0]) * 1024;
            }
        }
        return 0;
    }

    /// <summary>Resets VmHWM to the current RSS (writing 5 to clear_refs), so each workload reports its own peak.</summary>
    public void ResetPeakRss()
    {
        try
        {
            File.WriteAllText($"/proc/{Pid}/clear_refs", "5");
        }
        catch (IOException)
        {
            // older kernels: the peak then covers the server's whole life, which is still an upper bound
        }
        catch (UnauthorizedAccessException)
        {
        }
    }

    /// <summary>SIGTERM (the server flushes and exits 0), SIGKILL after <paramref name="timeout"/>. Returns the exit code.</summary>
    public async Task<int> StopAsync(TimeSpan timeout)
    {
        if (!_process.HasExited)
        {
            _ = Kill(Pid, SigTerm);
            using var cts = new CancellationTokenSource(timeout);
            try
            {
                await _process.WaitForExitAsync(cts.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                _process.Kill();
                await _process.WaitForExitAsync(CancellationToken.None).ConfigureAwait(false);
            }
        }
        return _process.ExitCode;
    }

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            _process.Kill();
            await _process.WaitForExitAsync(CancellationToken.None).ConfigureAwait(false);
        }
        _process.Dispose();
    }

    private void Append(string? line)
    {
        if (line is null)
        {
            return;
        }
        lock (_output)
        {
            if (_output.Length < 64 * 1024)
            {
                _output.AppendLine(line);
            }
        }
    }

    /// <summary>Listening = accepts a connection and sends the NBD greeting ("NBDMAGIC").</summary>
    private async Task WaitUntilListeningAsync(TimeSpan timeout, CancellationToken cancellationToken)
    {
        var deadline = Stopwatch.GetTimestamp() + (long)(timeout.TotalSeconds * Stopwatch.Frequency);
        var greeting = new byte[8];
        while (Stopwatch.GetTimestamp() < deadline)
        {
            if (_process.HasExited)
            {
                throw new InvalidOperationException($"nbdqcow serve exited with code {_process.ExitCode}: {Output.Trim()}");
            }
            try
            {
                using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
                using var attempt = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
                attempt.CancelAfter(TimeSpan.FromSeconds(2));
                await socket.ConnectAsync(new IPEndPoint(IPAddress.Loopback, Port), attempt.Token).ConfigureAwait(false);
                var received = 0;
                while (received < greeting.Length)
                {
                    var n = await socket.ReceiveAsync(greeting.AsMemory(received), SocketFlags.None, attempt.Token).ConfigureAwait(false);
                    if (n == 0)
                    {
                        break;
                    }
                    received += n;
                }
                if (received == greeting.Length && greeting.AsSpan().SequenceEqual("NBDMAGIC"u8))
                {
                    return;
                }
            }
            catch (SocketException)
            {
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
            }
            await Task.Delay(50, cancellationToken).ConfigureAwait(false);
        }
        throw new TimeoutException($"nbdqcow serve did not listen on 127.0.0.1:{Port} within {timeout.TotalSeconds:0} s: {Output.Trim()}");
    }

    private static int FreeLoopbackPort()
    {
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        socket.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        return ((IPEndPoint)socket.LocalEndPoint!).Port;
    }

    private const int SigTerm = 15;

    // sysconf(_SC_CLK_TCK) is 100 on every Linux architecture .NET runs on.
    private const int ClockTicksPerSecond = 100;

    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static partial int Kill(int pid, int signal);
}
