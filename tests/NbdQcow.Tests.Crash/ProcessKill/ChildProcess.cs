using System.Diagnostics;
using System.Text;

namespace NbdQcow.Tests.Crash.ProcessKill;

/// <summary>A process this test started, with its output captured line by line; killed by PID only.</summary>
public sealed class ChildProcess : IDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _output = new();
    private readonly List<string> _stdoutLines = [];

    public ChildProcess(string fileName, IEnumerable<string> arguments, string workingDirectory)
    {
        var start = new ProcessStartInfo(fileName)
        {
            WorkingDirectory = workingDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var argument in arguments) start.ArgumentList.Add(argument);
        CommandLine = fileName + " " + string.Join(" ", start.ArgumentList);
        _process = new Process { StartInfo = start };
        _process.OutputDataReceived += (_, e) =>
        {
            if (e.Data is null) return;
            lock (_output) { _output.AppendLine(e.Data); _stdoutLines.Add(e.Data); }
        };
        _process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is null) return;
            lock (_output) _output.AppendLine(e.Data);
        };
        _process.Start();
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
    }

    public string CommandLine { get; }

    public int Id => _process.Id;

    public bool HasExited => _process.HasExited;

    public string Output
    {
        get { lock (_output) return _output.ToString(); }
    }

    /// <summary>Waits (bounded) until a stdout line satisfies <paramref name="match"/>; false on timeout or exit.</summary>
    public async Task<string?> WaitForLineAsync(Func<string, bool> match, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (DateTime.UtcNow < deadline)
        {
            lock (_output)
                foreach (var line in _stdoutLines)
                    if (match(line)) return line;
            if (_process.HasExited)
            {
                await Task.Delay(100); // let the last lines arrive
                lock (_output)
                    foreach (var line in _stdoutLines)
                        if (match(line)) return line;
                return null;
            }
            await Task.Delay(20);
        }
        return null;
    }

    public int CountLines(Func<string, bool> match)
    {
        lock (_output) return _stdoutLines.Count(match);
    }

    /// <summary>SIGKILL by PID, then wait (bounded) for it to be gone.</summary>
    public void Kill()
    {
        if (_process.HasExited) return;
        _process.Kill(entireProcessTree: false);
        _process.WaitForExit(10_000);
    }

    public async Task<int> WaitForExitAsync(TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            await _process.WaitForExitAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            Kill();
        }
        return _process.HasExited ? _process.ExitCode : -1;
    }

    public void Dispose()
    {
        Kill();
        _process.Dispose();
    }
}
