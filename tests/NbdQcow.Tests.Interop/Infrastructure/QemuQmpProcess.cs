using System.Diagnostics;
using System.Text;

namespace NbdQcow.Tests.Interop.Infrastructure;

/// <summary>
/// A real qemu process driven through QMP on a Unix socket: qemu-storage-daemon (qemu's block layer without a
/// guest), or qemu-system-x86_64 with `-machine none` under TCG (no guest to boot, but migration and the block layer
/// are the real ones; starts in well under a second). Stopped with QMP quit, then by its own PID if it does not go.
/// </summary>
public sealed class QemuQmpProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly TempDirectory _folder;
    private readonly StringBuilder _output;

    private QemuQmpProcess(Process process, TempDirectory folder, QmpClient qmp, StringBuilder output)
    {
        _process = process;
        _folder = folder;
        _output = output;
        Qmp = qmp;
    }

    public QmpClient Qmp { get; }

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

    public string Tool { get; private init; } = "";

    public string Describe() => $"{Tool} (pid {_process.Id}):\n{Output}\n--- QMP ---\n{Qmp.Transcript}";

    /// <summary>Starts qemu-storage-daemon with <paramref name="arguments"/> plus a QMP monitor, and connects to it (bounded).</summary>
    public static Task<QemuQmpProcess> StartStorageDaemonAsync(IEnumerable<string> arguments, string workingDirectory) =>
        StartAsync("qemu-storage-daemon", qmp => ["--chardev", $"socket,id=qmp0,path={qmp},server=on,wait=off", "--monitor", "chardev=qmp0"],
            arguments, workingDirectory);

    /// <summary>Starts qemu-system-x86_64 -machine none (TCG, no display, no default devices) with <paramref name="arguments"/>.</summary>
    public static Task<QemuQmpProcess> StartSystemAsync(IEnumerable<string> arguments, string workingDirectory) =>
        StartAsync("qemu-system-x86_64", qmp => ["-machine", "none", "-accel", "tcg", "-nodefaults", "-display", "none",
            "-qmp", $"unix:{qmp},server=on,wait=off"], arguments, workingDirectory);

    /// <summary>
    /// Starts qemu-system-x86_64 with a QMP monitor and <paramref name="arguments"/>, which name the machine: a guest
    /// that boots (the VM tests).
    /// </summary>
    public static Task<QemuQmpProcess> StartSystemGuestAsync(IEnumerable<string> arguments, string workingDirectory) =>
        StartAsync("qemu-system-x86_64", qmp => ["-qmp", $"unix:{qmp},server=on,wait=off"], arguments, workingDirectory);

    public bool HasExited => _process.HasExited;

    /// <summary>Waits (bounded) for qemu to exit by itself, as it does when its guest powers off; false on time-out.</summary>
    public async Task<bool> WaitForExitAsync(TimeSpan timeout)
    {
        using var cancel = new CancellationTokenSource(timeout);
        try
        {
            await _process.WaitForExitAsync(cancel.Token);
            return true;
        }
        catch (OperationCanceledException)
        {
            return _process.HasExited;
        }
    }

    private static async Task<QemuQmpProcess> StartAsync(string tool, Func<string, string[]> monitorArguments,
        IEnumerable<string> arguments, string workingDirectory)
    {
        var folder = new TempDirectory("qmp");
        var qmpSocket = folder.File("qmp.sock");
        var start = new ProcessStartInfo(ToolRunner.Locate(tool))
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
            WorkingDirectory = workingDirectory,
        };
        foreach (var argument in monitorArguments(qmpSocket))
        {
            start.ArgumentList.Add(argument);
        }
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }
        var process = Process.Start(start) ?? throw new InvalidOperationException($"could not start {tool}");
        var output = new StringBuilder();
        process.OutputDataReceived += (_, e) => { lock (output) { output.AppendLine(e.Data); } };
        process.ErrorDataReceived += (_, e) => { lock (output) { output.AppendLine(e.Data); } };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        var clock = Stopwatch.StartNew();
        while (!File.Exists(qmpSocket))
        {
            if (process.HasExited || clock.Elapsed > TimeSpan.FromSeconds(20))
            {
                if (!process.HasExited)
                {
                    process.Kill();
                }
                await process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(10));
                folder.Dispose();
                string text;
                lock (output)
                {
                    text = output.ToString();
                }
                Assert.Fail($"{tool} did not come up (exit {process.ExitCode}): {string.Join(' ', start.ArgumentList)}\n{text}");
            }
            await Task.Delay(20);
        }
        var qmp = await QmpClient.ConnectAsync(qmpSocket, TimeSpan.FromSeconds(20));
        return new QemuQmpProcess(process, folder, qmp, output) { Tool = tool };
    }

    /// <summary>
    /// Runs a qemu-io command inside qemu (HMP qemu-io on a block node). qemu-io prints its result on qemu's stdout and
    /// only refusals (a read-only node) in the reply: waits (bounded) for the result line and fails the test on an error
    /// or a pattern mismatch.
    /// </summary>
    public async Task QemuIoAsync(string node, string command)
    {
        var before = Output.Length;
        var reply = (string?)await Qmp.ExecuteAsync("human-monitor-command",
            new Dictionary<string, object> { ["command-line"] = $"qemu-io {node} \"{command}\"" }) ?? "";
        Assert.True(reply.Length == 0, $"qemu-io {node} \"{command}\" inside {Tool} was refused: {reply}\n{Describe()}");
        var clock = Stopwatch.StartNew();
        while (true)
        {
            var printed = Output[before..];
            if (printed.Contains("fail", StringComparison.OrdinalIgnoreCase) || printed.Contains("error", StringComparison.OrdinalIgnoreCase))
            {
                Assert.Fail($"qemu-io {node} \"{command}\" inside {Tool} failed: {printed}\n{Describe()}");
            }
            if (printed.Contains(" bytes at offset ", StringComparison.Ordinal) && printed.Contains("ops;", StringComparison.Ordinal))
            {
                return;
            }
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(20), $"qemu-io {node} \"{command}\" inside {Tool}: no result printed\n{Describe()}");
            await Task.Delay(20);
        }
    }

    /// <summary>QMP quit and a bounded wait for the exit (images closed, locks released).</summary>
    public async Task QuitAsync()
    {
        if (_process.HasExited)
        {
            return;
        }
        await Qmp.TryExecuteAsync("quit");
        using var cancel = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        try
        {
            await _process.WaitForExitAsync(cancel.Token);
        }
        catch (OperationCanceledException)
        {
            _process.Kill();
            await _process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(10));
            Assert.Fail($"{Tool} did not exit after quit\n{Describe()}");
        }
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            if (!_process.HasExited)
            {
                _process.Kill();
                await _process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(10));
            }
        }
        finally
        {
            await Qmp.DisposeAsync();
            _process.Dispose();
            _folder.Dispose();
        }
    }
}
