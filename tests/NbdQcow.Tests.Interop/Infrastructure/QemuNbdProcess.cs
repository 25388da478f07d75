using System.Diagnostics;
using System.Text;

namespace NbdQcow.Tests.Interop.Infrastructure;

/// <summary>
/// A real `qemu-nbd --persistent --socket DIR/qemu.sock IMAGE` kept running (and so holding qemu's image locks) until
/// disposed; it is stopped by PID (SIGTERM, then SIGKILL), bounded.
/// </summary>
public sealed class QemuNbdProcess : IAsyncDisposable
{
    private readonly Process process;
    private readonly TempDirectory socketFolder;
    private readonly StringBuilder output = new();

    private QemuNbdProcess(Process process, TempDirectory socketFolder, string socketPath)
    {
        this.process = process;
        this.socketFolder = socketFolder;
        SocketPath = socketPath;
    }

    public string SocketPath { get; }

    public int ProcessId => process.Id;

    /// <summary>Starts qemu-nbd on <paramref name="image"/> and waits (bounded) until its socket exists.</summary>
    /// <param name="extraArguments">More qemu-nbd options, e.g. -A or -B NAME.</param>
    public static async Task<QemuNbdProcess> StartAsync(string image, string format, bool readOnly = false,
        IReadOnlyList<string>? extraArguments = null)
    {
        var folder = new TempDirectory("qnbd");
        var socket = folder.File("qemu.sock");
        var start = new ProcessStartInfo(ToolRunner.Locate("qemu-nbd"))
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        foreach (var argument in new[] { "--persistent", "--socket", socket, "--format", format })
        {
            start.ArgumentList.Add(argument);
        }
        if (readOnly)
        {
            start.ArgumentList.Add("--read-only");
        }
        foreach (var argument in extraArguments ?? [])
        {
            start.ArgumentList.Add(argument);
        }
        start.ArgumentList.Add(image);
        var process = Process.Start(start) ?? throw new InvalidOperationException("could not start qemu-nbd");
        var qemuNbd = new QemuNbdProcess(process, folder, socket);
        process.OutputDataReceived += (_, e) => qemuNbd.Append(e.Data);
        process.ErrorDataReceived += (_, e) => qemuNbd.Append(e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        var clock = Stopwatch.StartNew();
        while (!File.Exists(socket))
        {
            if (process.HasExited || clock.Elapsed > TimeSpan.FromSeconds(20))
            {
                await qemuNbd.DisposeAsync();
                Assert.Fail($"qemu-nbd did not come up on {image} (exit {(process.HasExited ? process.ExitCode : "none")}):\n{qemuNbd.Output}");
            }
            await Task.Delay(50);
        }
        return qemuNbd;
    }

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

    public async ValueTask DisposeAsync()
    {
        try
        {
            if (!process.HasExited)
            {
                process.Kill();
                await process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(10));
            }
        }
        finally
        {
            process.Dispose();
            socketFolder.Dispose();
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
        }
    }
}
