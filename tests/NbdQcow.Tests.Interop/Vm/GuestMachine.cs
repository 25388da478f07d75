using System.Diagnostics;
using System.Globalization;
using System.Text;
using NbdQcow.Tests.Interop.Infrastructure;

namespace NbdQcow.Tests.Interop.Vm;

/// <summary>
/// One boot of the test guest under qemu-system-x86_64 (software emulation) through tests/vm/run-guest.sh, which
/// execs qemu, so the process started here is qemu itself and is killed by its PID. The guest reaches the NBD
/// server on 127.0.0.1:PORT only through a guestfwd rule; everything it prints goes to a serial log file that this
/// class polls for lines.
/// </summary>
public sealed class GuestMachine : IAsyncDisposable
{
    /// <summary>The start of the one line the guest prints before powering off: "RESULT: PASS" or "RESULT: FAIL step=...".</summary>
    public const string ResultPrefix = "RESULT: ";
    private static readonly TimeSpan PowerOffTimeout = TimeSpan.FromSeconds(60);

    private readonly Process process;
    private readonly StringBuilder qemuOutput = new();
    private readonly SerialConsoleLog serialLog;

    private GuestMachine(Process process, string commandLine, string serialLogPath, string connectionLogPath)
    {
        this.process = process;
        CommandLine = commandLine;
        SerialLogPath = serialLogPath;
        serialLog = new SerialConsoleLog(serialLogPath);
        ConnectionLogPath = connectionLogPath;
    }

    public string CommandLine { get; }

    public string SerialLogPath { get; }

    /// <summary>One line per TCP connection the guest opened to the server (written by the guestfwd command).</summary>
    public string ConnectionLogPath { get; }

    public int ConnectionCount =>
        File.Exists(ConnectionLogPath) ? File.ReadAllLines(ConnectionLogPath).Count(l => l.Length > 0) : 0;

    /// <summary>Boots the guest; it attaches export <paramref name="exportName"/> of the server on 127.0.0.1:<paramref name="serverPort"/>.</summary>
    public static GuestMachine Start(string guestDirectory, string workDirectory, int serverPort, string exportName,
        int connections, long deviceSize, GuestMode mode)
    {
        var serialLog = Path.Combine(workDirectory, "serial.log");
        var connectionLog = Path.Combine(workDirectory, "connections.log");
        var start = new ProcessStartInfo(ToolRunner.Locate("bash"))
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = workDirectory,
        };
        foreach (var argument in new[]
                 {
                     Path.Combine(GuestBuild.ScriptsFolder, "run-guest.sh"), guestDirectory,
                     serverPort.ToString(CultureInfo.InvariantCulture), exportName,
                     connections.ToString(CultureInfo.InvariantCulture),
                     deviceSize.ToString(CultureInfo.InvariantCulture),
                     mode == GuestMode.Crash ? "crash" : "full", serialLog, connectionLog,
                 })
        {
            start.ArgumentList.Add(argument);
        }

        var commandLine = "bash " + string.Join(' ', start.ArgumentList);
        var process = new Process { StartInfo = start };
        var machine = new GuestMachine(process, commandLine, serialLog, connectionLog);
        process.OutputDataReceived += (_, e) => machine.AppendQemuOutput(e.Data);
        process.ErrorDataReceived += (_, e) => machine.AppendQemuOutput(e.Data);
        if (!process.Start())
        {
            throw new InvalidOperationException($"could not start {commandLine}");
        }

        process.StandardInput.Close();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return machine;
    }

    /// <summary>The serial console so far, split in lines (carriage returns removed).</summary>
    public IReadOnlyList<string> SerialLines() => serialLog.Lines();

    /// <summary>
    /// Waits until the guest prints a line containing one of <paramref name="markers"/> and returns that marker;
    /// null if it powered off or time ran out first.
    /// </summary>
    public Task<string?> WaitForLineAsync(TimeSpan timeout, params string[] markers) =>
        serialLog.WaitForLineAsync(timeout, () => process.HasExited, markers);

    /// <summary>
    /// Waits for the guest's RESULT line and for qemu to exit after the guest powers off; fails the test (with the
    /// serial log) unless the guest printed exactly one "RESULT: PASS".
    /// </summary>
    public async Task AssertPassedAsync(TimeSpan timeout, Func<string>? describeServer = null)
    {
        var printed = await WaitForLineAsync(timeout, ResultPrefix) is not null;
        var exited = await WaitForExitAsync(printed ? PowerOffTimeout : TimeSpan.Zero);
        var results = SerialLines()
            .Select(l => l.IndexOf(ResultPrefix, StringComparison.Ordinal) is var at and >= 0 ? l[at..].Trim() : null)
            .OfType<string>()
            .ToList();
        string? problem = null;
        if (results.Count == 0)
        {
            problem = process.HasExited
                ? $"the guest stopped (qemu exit {process.ExitCode}) without a RESULT line"
                : $"no RESULT line within {timeout.TotalSeconds:F0} s";
        }
        else if (results.Count > 1)
        {
            problem = $"{results.Count} RESULT lines: {string.Join(" | ", results)}";
        }
        else if (results[0] != "RESULT: PASS")
        {
            problem = $"the guest reported {results[0]}";
        }
        else if (!exited)
        {
            problem = $"the guest passed but qemu did not exit within {PowerOffTimeout.TotalSeconds:F0} s of powering off";
        }

        if (problem is not null)
        {
            Assert.Fail($"{problem}\n{Describe()}\n{describeServer?.Invoke()}");
        }
    }

    /// <summary>Command line, qemu's own output and the end of the serial console, for failure messages.</summary>
    public string Describe()
    {
        string qemuText;
        lock (qemuOutput)
        {
            qemuText = qemuOutput.ToString().TrimEnd();
        }

        var serial = SerialLines().Where(l => !l.StartsWith("MANIFEST: ", StringComparison.Ordinal)).ToList();
        return $"guest: {CommandLine} (pid {process.Id}{(process.HasExited ? $", exited {process.ExitCode}" : ", running")})\n" +
               $"connections opened by the guest: {ConnectionCount}\n" +
               $"--- qemu output ---\n{qemuText}\n" +
               $"--- serial console (last 80 lines, manifest omitted) ---\n{string.Join('\n', serial.TakeLast(80))}";
    }

    public async ValueTask DisposeAsync()
    {
        if (!process.HasExited)
        {
            process.Kill();
            await WaitForExitAsync(TimeSpan.FromSeconds(10));
        }

        process.Dispose();
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
            return process.HasExited;
        }
    }

    private void AppendQemuOutput(string? line)
    {
        if (line is null)
        {
            return;
        }

        lock (qemuOutput)
        {
            if (qemuOutput.Length < 64 * 1024)
            {
                qemuOutput.AppendLine(line);
            }
        }
    }
}
