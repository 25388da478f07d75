using System.Diagnostics;
using System.Text;

namespace NbdQcow.Tests.Interop.Infrastructure;

/// <summary>
/// A real qemu-storage-daemon (qemu's block layer without a guest: starts in milliseconds) driven through QMP on a
/// Unix socket. Stopped with QMP quit, then by its own PID if it does not go.
/// </summary>
public sealed class QemuStorageDaemon : IAsyncDisposable
{
    private readonly Process _process;
    private readonly TempDirectory _folder;
    private readonly StringBuilder _output;

    private QemuStorageDaemon(Process process, TempDirectory folder, QmpClient qmp, StringBuilder output)
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

    public string Describe() => $"qemu-storage-daemon (pid {_process.Id}):\n{Output}\n--- QMP ---\n{Qmp.Transcript}";

    /// <summary>Starts the daemon with <paramref name="arguments"/> plus a QMP monitor, and connects to it (bounded).</summary>
    public static async Task<QemuStorageDaemon> StartAsync(IEnumerable<string> arguments, string workingDirectory)
    {
        var folder = new TempDirectory("qsd");
        var qmpSocket = folder.File("qmp.sock");
        var start = new ProcessStartInfo(ToolRunner.Locate("qemu-storage-daemon"))
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
            WorkingDirectory = workingDirectory,
        };
        foreach (var argument in new[] { "--chardev", $"socket,id=qmp0,path={qmpSocket},server=on,wait=off", "--monitor", "chardev=qmp0" })
        {
            start.ArgumentList.Add(argument);
        }
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }
        var process = Process.Start(start) ?? throw new InvalidOperationException("could not start qemu-storage-daemon");
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
                Assert.Fail($"qemu-storage-daemon did not come up (exit {process.ExitCode}): {string.Join(' ', start.ArgumentList)}\n{text}");
            }
            await Task.Delay(20);
        }
        var qmp = await QmpClient.ConnectAsync(qmpSocket, TimeSpan.FromSeconds(20));
        return new QemuStorageDaemon(process, folder, qmp, output);
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
            Assert.Fail($"qemu-storage-daemon did not exit after quit\n{Describe()}");
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
