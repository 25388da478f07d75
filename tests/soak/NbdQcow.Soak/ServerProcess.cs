using System.Diagnostics;

namespace NbdQcow.Soak;

/// <summary>The real server (`nbdqcow serve IMAGE --socket PATH`) as a child process, with its stderr kept for the report.</summary>
public sealed class ServerProcess : IDisposable
{
    private readonly Process _process;
    private readonly List<string> _stderr = [];

    private ServerProcess(Process process)
    {
        _process = process;
        _process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (_stderr) _stderr.Add(e.Data); };
        _process.OutputDataReceived += (_, _) => { };
        _process.BeginErrorReadLine();
        _process.BeginOutputReadLine();
    }

    public int Id => _process.Id;

    public bool HasExited => _process.HasExited;

    public static async Task<ServerProcess> StartAsync(string launcher, string image, string socket, IReadOnlyList<string> extraArgs)
    {
        if (File.Exists(socket)) File.Delete(socket);
        var info = new ProcessStartInfo(launcher)
        {
            RedirectStandardError = true,
            RedirectStandardOutput = true,
            UseShellExecute = false,
        };
        foreach (var a in new[] { "serve", image, "--socket", socket, "--export", "soak" }) info.ArgumentList.Add(a);
        foreach (var a in extraArgs) info.ArgumentList.Add(a);
        var server = new ServerProcess(Process.Start(info) ?? throw new InvalidOperationException($"cannot start {launcher}"));
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(120); // the first start may build the server
        while (!File.Exists(socket))
        {
            if (server.HasExited) throw new SoakFailure($"server exited at start with code {server._process.ExitCode}: {server.Stderr()}");
            if (DateTime.UtcNow > deadline) throw new SoakFailure("server did not create its socket within 120 s");
            await Task.Delay(50).ConfigureAwait(false);
        }
        return server;
    }

    public void Signal(int signal)
    {
        if (!_process.HasExited) _ = Native.Kill(_process.Id, signal);
    }

    public async Task<int> WaitForExitAsync(TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            await _process.WaitForExitAsync(cts.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            throw new SoakFailure($"server {Id} did not exit within {timeout.TotalSeconds} s");
        }
        return _process.ExitCode;
    }

    /// <summary>VmRSS in KiB and the number of open descriptors other than loaded assemblies, from /proc.</summary>
    public (long RssKiB, int Fds)? Sample()
    {
        try
        {
            long rss = 0;
            foreach (var line in File.ReadLines($"/proc/{Id}/status"))
                if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
                    rss = long.Parse(line["VmRSS:".Length..].Trim().Split(' ')[0]);
            int fds = 0;
            foreach (var fd in Directory.GetFileSystemEntries($"/proc/{Id}/fd"))
            {
                // Assemblies and their symbols are opened once, when first needed (a first exception's stack trace
                // loads several): a step, not a leak. Everything else (sockets, image files, pipes) is counted.
                string? target = new FileInfo(fd).LinkTarget;
                if (target is null || !(target.EndsWith(".dll", StringComparison.Ordinal) || target.EndsWith(".pdb", StringComparison.Ordinal)
                    || target.EndsWith(".so", StringComparison.Ordinal))) fds++;
            }
            return (rss, fds);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    public string Stderr()
    {
        lock (_stderr) return string.Join('\n', _stderr.TakeLast(20));
    }

    public void Dispose()
    {
        if (!_process.HasExited) Signal(Native.SigKill);
        _process.Dispose();
    }
}
