using System.Collections.Concurrent;
using System.Diagnostics;
using NbdQcow.Protocol.Client;

namespace NbdQcow.Soak;

/// <summary>
/// The soak: a real server on a qcow2 image, <see cref="SoakOptions.Connections"/> clients with
/// <see cref="SoakOptions.QueueDepth"/> requests each checked against a <see cref="ContentModel"/>, random clients
/// killed mid-request, and every <see cref="SoakOptions.RestartEverySeconds"/> the server stopped with SIGTERM or
/// SIGKILL (alternating, with requests in flight), the image checked with qemu-img, the server restarted and every
/// block touched since the last check read back. Resource use is sampled with no request in flight.
/// </summary>
public sealed class SoakRun(SoakOptions options)
{
    private const int MaxReportedMismatches = 20;
    private readonly ConcurrentQueue<string> _failures = new();
    private readonly List<string> _log = [];
    private ServerProcess? _server;
    private Stopwatch _serverClock = new();

    public int Seed => options.Seed;
    public int QueueDepth => options.QueueDepth;
    public Gate Gate { get; } = new();
    public SoakCounters Counters { get; } = new();
    public ContentModel Model { get; } = new(options.ImageMiB * 256);
    public string Socket { get; private set; } = "";
    public long InFlight;
    /// <summary>A server stop or restart is under way: requests may fail with the connection.</summary>
    public volatile bool Disrupting;
    /// <summary>Bumped when a server stop begins and again when the restarted server is released to the loops:
    /// a connection made under an older generation may fail with its server.</summary>
    public volatile int Generation;
    public bool Failed => !_failures.IsEmpty;

    public void Fail(string message)
    {
        if (_failures.Count < MaxReportedMismatches) _failures.Enqueue(message);
        else if (_failures.Count == MaxReportedMismatches) _failures.Enqueue("(further failures not shown)");
    }

    /// <summary>A random pause before a loop's next request, so all loops together send about OpsPerSecond.</summary>
    public TimeSpan PaceDelay(Random random)
    {
        double mean = (double)options.Connections * options.QueueDepth / options.OpsPerSecond;
        return TimeSpan.FromSeconds(mean * (0.5 + random.NextDouble()));
    }

    /// <summary>Blocks of a request whose connection died stay reserved for a while: the server may still carry it out.</summary>
    public void Quarantine(int first, int count) =>
        _ = Task.Delay(TimeSpan.FromSeconds(2)).ContinueWith(_ => Model.Release(first, count), TaskScheduler.Default);

    /// <summary>Checks one block read back against the model; returns the write it holds, or null (reported) when not allowed.</summary>
    public long? CheckBlock(int block, ReadOnlySpan<byte> content, bool afterCrash, string when)
    {
        long? tag = BlockPattern.Identify(content, block);
        var allowed = afterCrash ? Model.AfterCrash(block) : Model.Current(block);
        if (tag is { } t && allowed.Contains(t)) return t;
        Fail($"{when}: block {block} (offset {(long)block * BlockPattern.BlockSize}) holds {(tag is { } f ? $"write #{f}" : "content no write produced")}; allowed: {string.Join(", ", allowed.Select(a => a == 0 ? "zeroes" : $"write #{a}"))}");
        return null;
    }

    public async Task<int> RunAsync()
    {
        string work = options.WorkDir ?? Path.Combine(Path.GetTempPath(), $"nbdqcow-soak-{Environment.ProcessId}");
        Directory.CreateDirectory(work);
        string image = Path.Combine(work, "soak.qcow2");
        Socket = Path.Combine(work, "nbd.sock");
        string launcher = options.Launcher ?? FindLauncher();
        Say($"soak: {options.Minutes} min, {options.Connections} connections x QD{options.QueueDepth}, ~{options.OpsPerSecond} requests/s, " +
            $"{options.ImageMiB} MiB qcow2, cache {options.Cache}, restart every {options.RestartEverySeconds} s, seed {options.Seed}, in {work}");
        Run("qemu-img", "create", "-q", "-f", "qcow2", image, $"{options.ImageMiB}M").ThrowIfFailed("qemu-img create");

        var stop = new CancellationTokenSource();
        var segments = new List<string>();
        var workers = new List<ConnectionWorker>();
        var workerTasks = new List<Task>();
        var random = new Random(options.Seed);
        var total = new Stopwatch();
        var end = TimeSpan.FromMinutes(options.Minutes);
        try
        {
            await StartServerAsync(launcher, image).ConfigureAwait(false);
            total.Start(); // after the first start, which may build the server
            int regionBlocks = Model.Blocks / options.Connections;
            for (int c = 0; c < options.Connections; c++)
            {
                var worker = new ConnectionWorker(c, c * regionBlocks, regionBlocks, this);
                workers.Add(worker);
                workerTasks.Add(Task.Run(() => worker.RunAsync(stop.Token)));
            }
            for (int segment = 1; ; segment++)
            {
                var samples = new List<ResourceSample>();
                var segmentClock = Stopwatch.StartNew();
                var nextSample = TimeSpan.FromSeconds(5);
                while (segmentClock.Elapsed < TimeSpan.FromSeconds(options.RestartEverySeconds) && total.Elapsed < end && !Failed)
                {
                    await Task.Delay(500).ConfigureAwait(false);
                    if (random.Next(6) == 0) await workers[random.Next(workers.Count)].KillAsync().ConfigureAwait(false);
                    if (segmentClock.Elapsed >= nextSample)
                    {
                        samples.Add(await QuiescentSampleAsync().ConfigureAwait(false));
                        if (options.Verbose) Console.WriteLine($"    sample at {samples[^1].Seconds:F0} s: RSS {samples[^1].RssKiB / 1024.0:F1} MiB, {samples[^1].Fds} fds, {Counters.ClientKills} clients killed so far");
                        nextSample += TimeSpan.FromSeconds(10);
                    }
                }
                if (Failed) break;
                samples.Add(await QuiescentSampleAsync().ConfigureAwait(false));
                bool last = total.Elapsed >= end;
                int signal = last || segment % 2 == 1 ? Native.SigTerm : Native.SigKill;
                CheckResources(segment, samples);
                string checkResult = await StopServerAsync(signal, image).ConfigureAwait(false);
                segments.Add(DescribeSegment(segment, signal, segmentClock.Elapsed, samples, checkResult));
                Console.WriteLine($"  {segments[^1]}"); // progress for long runs; the summary repeats it
                if (Failed) break;
                await StartServerAsync(launcher, image).ConfigureAwait(false);
                await VerifyAsync(afterCrash: signal == Native.SigKill).ConfigureAwait(false);
                if (last || Failed)
                {
                    if (!Failed) segments.Add("final: restarted, every touched block verified; " + await StopServerAsync(Native.SigTerm, image).ConfigureAwait(false));
                    break;
                }
                Generation++;
                Disrupting = false;
                Gate.Open();
            }
        }
        catch (SoakFailure e)
        {
            Fail(e.Message);
        }
        finally
        {
            Gate.Close();
            stop.Cancel();
            try
            {
                await Task.WhenAll(workerTasks).WaitAsync(TimeSpan.FromSeconds(30)).ConfigureAwait(false);
            }
            catch (Exception e) when (e is OperationCanceledException or TimeoutException)
            {
            }
            _server?.Dispose();
        }

        Say($"segments:");
        foreach (var s in segments) Say("  " + s);
        var c2 = Counters;
        double seconds = total.Elapsed.TotalSeconds;
        Say($"requests: {c2.Reads} reads, {c2.Writes} writes, {c2.Zeroes} zeroes, {c2.Trims} trims, {c2.Flushes} flushes " +
            $"({(c2.Reads + c2.Writes + c2.Zeroes + c2.Trims + c2.Flushes) / seconds:F0}/s over {seconds:F0} s); " +
            $"{c2.Interrupted} interrupted by kills/restarts; {c2.ClientKills} clients killed; {c2.Connections} connections; {c2.BlocksVerified} blocks verified after restarts");
        if (Failed)
        {
            Say("SOAK FAILED:");
            foreach (var f in _failures) Say("  " + f);
            if (_server is not null) Say("server stderr (last lines):\n" + _server.Stderr());
            return 1;
        }
        Say("SOAK PASSED");
        try
        {
            if (options.WorkDir is null) Directory.Delete(work, recursive: true);
        }
        catch (IOException)
        {
        }
        return 0;
    }

    private async Task StartServerAsync(string launcher, string image)
    {
        _server?.Dispose();
        var extra = new List<string> { "--cache", options.Cache };
        _server = await ServerProcess.StartAsync(launcher, image, Socket, extra).ConfigureAwait(false);
        _serverClock = Stopwatch.StartNew();
    }

    /// <summary>Signals the server with requests in flight, waits for it, drains the loops, runs qemu-img check.</summary>
    private async Task<string> StopServerAsync(int signal, string image)
    {
        var server = _server!;
        Gate.Open(); // let requests be in flight when the signal lands
        await Task.Delay(TimeSpan.FromSeconds(1)).ConfigureAwait(false);
        Generation++;
        Disrupting = true;
        server.Signal(signal);
        int code = await server.WaitForExitAsync(TimeSpan.FromSeconds(60)).ConfigureAwait(false);
        Gate.Close();
        await DrainAsync(TimeSpan.FromSeconds(40)).ConfigureAwait(false);
        string name = signal == Native.SigTerm ? "SIGTERM" : "SIGKILL";
        if (signal == Native.SigTerm && code != 0)
            Fail($"server exited with code {code} after SIGTERM (expected 0): {server.Stderr()}");
        var check = Run("qemu-img", "check", "-f", "qcow2", image);
        // Exit codes: 0 clean, 1 check failed, 2 corruptions, 3 leaks only. Leaks are allowed after a kill, never after a clean stop.
        if (check.Code != 0 && !(signal == Native.SigKill && check.Code == 3))
            Fail($"qemu-img check after {name}: exit {check.Code}: {check.Output.Trim()}");
        return $"{name} -> exit {code}, qemu-img check exit {check.Code}" + (check.Code == 3 ? " (leaks only)" : "");
    }

    /// <summary>Pauses the loops, samples the server with nothing in flight, resumes.</summary>
    private async Task<ResourceSample> QuiescentSampleAsync()
    {
        Gate.Close();
        await DrainAsync(TimeSpan.FromSeconds(30)).ConfigureAwait(false);
        await Task.Delay(200).ConfigureAwait(false); // let the server finish sending what it answered
        var sample = _server!.Sample() ?? throw new SoakFailure($"server {_server.Id} is gone: {_server.Stderr()}");
        Gate.Open();
        return new ResourceSample(_serverClock.Elapsed.TotalSeconds, sample.RssKiB, sample.Fds);
    }

    private async Task DrainAsync(TimeSpan timeout)
    {
        var clock = Stopwatch.StartNew();
        while (Interlocked.Read(ref InFlight) > 0)
        {
            if (clock.Elapsed > timeout) throw new SoakFailure($"{Interlocked.Read(ref InFlight)} requests still unanswered {timeout.TotalSeconds} s after the loops were paused");
            await Task.Delay(20).ConfigureAwait(false);
        }
    }

    /// <summary>Reads every block touched since the last check, and a sample of the others, from the restarted server.</summary>
    private async Task VerifyAsync(bool afterCrash)
    {
        var blocks = new SortedSet<int>(Model.DirtyBlocks());
        var random = new Random(options.Seed ^ (int)Counters.BlocksVerified);
        for (int i = 0; i < 256; i++) blocks.Add(random.Next(Model.Blocks));
        var runs = new List<(int First, int Count)>();
        foreach (int b in blocks)
        {
            if (runs.Count > 0 && runs[^1].First + runs[^1].Count == b && runs[^1].Count < 32) runs[^1] = (runs[^1].First, runs[^1].Count + 1);
            else runs.Add((b, 1));
        }
        await using var client = await NbdClient.ConnectUnixAsync(Socket, new NbdClientOptions { ExportName = "soak" }).ConfigureAwait(false);
        int next = -1;
        string when = afterCrash ? "after SIGKILL + restart" : "after SIGTERM + restart";
        async Task Reader()
        {
            var buffer = new byte[32 * BlockPattern.BlockSize];
            int i;
            while ((i = Interlocked.Increment(ref next)) < runs.Count)
            {
                var (first, count) = runs[i];
                await client.ReadAsync((ulong)first * BlockPattern.BlockSize, buffer.AsMemory(0, count * BlockPattern.BlockSize)).ConfigureAwait(false);
                for (int k = 0; k < count; k++)
                {
                    var tag = CheckBlock(first + k, buffer.AsSpan(k * BlockPattern.BlockSize, BlockPattern.BlockSize), afterCrash, when);
                    if (tag is { } t) Model.Settle(first + k, t);
                }
                Interlocked.Add(ref Counters.BlocksVerified, count);
            }
        }
        await Task.WhenAll(Enumerable.Range(0, 16).Select(_ => Reader())).ConfigureAwait(false);
    }

    /// <summary>
    /// Fails the run when the server's descriptors or memory grew over a segment at equal load. Samples are taken
    /// with no request in flight; the connection count varies by the few clients reconnecting after a kill, hence
    /// the slack on descriptors. RSS may grow while caches warm up, not without bound.
    /// </summary>
    private void CheckResources(int segment, List<ResourceSample> samples)
    {
        if (samples.Count < 3) return;
        int lowestFds = samples.Min(s => s.Fds);
        if (samples[^1].Fds > lowestFds + 8)
            Fail($"segment {segment}: server descriptors grew from {lowestFds} to {samples[^1].Fds} at equal load (leak?)");
        long firstRss = samples[1].RssKiB; // after the first sample's warm-up
        if (samples[^1].RssKiB > Math.Max(firstRss * 3 / 2, firstRss + 64 * 1024))
            Fail($"segment {segment}: server RSS grew from {firstRss / 1024} MiB to {samples[^1].RssKiB / 1024} MiB (leak?)");
    }

    private static string DescribeSegment(int segment, int signal, TimeSpan length, List<ResourceSample> samples, string check)
    {
        var first = samples[0];
        var last = samples[^1];
        string text = $"segment {segment} ({length.TotalSeconds:F0} s): RSS {first.RssKiB / 1024.0:F1} -> {last.RssKiB / 1024.0:F1} MiB " +
            $"(slope {Slope(samples, s => s.RssKiB) / 1024.0:F2} MiB/min), fds {first.Fds} -> {last.Fds} (slope {Slope(samples, s => s.Fds):F2}/min), {samples.Count} samples; {check}";
        return text;
    }

    /// <summary>Least-squares slope per minute.</summary>
    public static double Slope(IReadOnlyList<ResourceSample> samples, Func<ResourceSample, double> value)
    {
        if (samples.Count < 2) return 0;
        double mx = samples.Average(s => s.Seconds), my = samples.Average(value);
        double num = 0, den = 0;
        foreach (var s in samples)
        {
            num += (s.Seconds - mx) * (value(s) - my);
            den += (s.Seconds - mx) * (s.Seconds - mx);
        }
        return den == 0 ? 0 : num / den * 60;
    }

    private void Say(string line)
    {
        Console.WriteLine(line);
        _log.Add(line);
    }

    private static string FindLauncher()
    {
        for (var dir = new DirectoryInfo(Directory.GetCurrentDirectory()); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "NbdQcow.sln")) && File.Exists(Path.Combine(dir.FullName, "nbdqcow")))
                return Path.Combine(dir.FullName, "nbdqcow");
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "NbdQcow.sln")) && File.Exists(Path.Combine(dir.FullName, "nbdqcow")))
                return Path.Combine(dir.FullName, "nbdqcow");
        throw new SoakFailure("cannot find the ./nbdqcow launcher (run from the repository, or pass --launcher)");
    }

    private static ToolResult Run(string file, params string[] args)
    {
        var info = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) info.ArgumentList.Add(a);
        using var process = Process.Start(info) ?? throw new SoakFailure($"cannot start {file}");
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(TimeSpan.FromMinutes(2))) throw new SoakFailure($"{file} {string.Join(' ', args)} did not finish in 2 minutes");
        return new ToolResult(process.ExitCode, stdout.Result + stderr.Result);
    }

    private readonly record struct ToolResult(int Code, string Output)
    {
        public void ThrowIfFailed(string what)
        {
            if (Code != 0) throw new SoakFailure($"{what} failed (exit {Code}): {Output}");
        }
    }
}
