using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Text.Json;
using NbdQcow.Cache;
using NbdQcow.Image;
using Spectre.Console;

namespace NbdQcow.Bench;

/// <summary>
/// `nbdqcow bench`: measures each cache mode on the user's own storage, the way an operator would
/// choose one. Every mode gets a fresh copy of the image and its own `nbdqcow serve` child process,
/// driven by the project's NBD client; the report shows speed next to what the mode promises.
/// </summary>
internal static class BenchCommand
{
    private static readonly TimeSpan ServerStartTimeout = TimeSpan.FromSeconds(60);
    private static readonly TimeSpan ServerStopTimeout = TimeSpan.FromSeconds(60);

    public static RootCommand Create()
    {
        var image = new Option<string?>("--image")
        {
            Description = "Benchmark on a copy of this image (made beside it, deleted afterwards); the image itself is never written.",
        };
        var dir = new Option<string?>("--dir")
        {
            Description = "Benchmark on a new image (see --size, --format) created and filled in this directory, deleted afterwards.",
        };
        var modes = new Option<string>("--modes")
        {
            Description = $"Cache modes to measure: all, or a comma list of {string.Join(",", CacheModeInfo.CliNames)}.",
            DefaultValueFactory = _ => "all",
        };
        var workload = new Option<string>("--workload")
        {
            Description = "Workloads: all, or a comma list of " + string.Join(", ", WorkloadNames()) + ".",
            DefaultValueFactory = _ => "all",
        };
        var seconds = new Option<double>("--seconds")
        {
            Description = "Measured seconds per workload and mode.",
            DefaultValueFactory = _ => 5,
        };
        var size = new Option<string>("--size")
        {
            Description = "Virtual size of the image --dir creates, and of the region the workloads use (e.g. 1G, 256M).",
            DefaultValueFactory = _ => "1G",
        };
        var format = new Option<string>("--format")
        {
            Description = "Format of the image --dir creates: qcow2 or raw.",
            DefaultValueFactory = _ => "qcow2",
        };
        var csv = new Option<string?>("--csv") { Description = "Also write the results to this CSV file." };
        var json = new Option<string?>("--json") { Description = "Also write the results, with each mode's guarantees, to this JSON file." };
        var chart = new Option<string?>("--chart") { Description = "Also draw the results as a bar chart into this SVG file (name ending .svg)." };

        var command = new RootCommand("nbdqcow bench: benchmark the cache modes on your storage: IOPS, MB/s, latency, and what each mode guarantees.")
        {
            image, dir, modes, workload, seconds, size, format, csv, json, chart,
        };
        command.SetAction(async (parseResult, cancellationToken) =>
        {
            var settings = new Settings(
                parseResult.GetValue(image),
                parseResult.GetValue(dir),
                parseResult.GetValue(modes)!,
                parseResult.GetValue(workload)!,
                parseResult.GetValue(seconds),
                parseResult.GetValue(size)!,
                parseResult.GetValue(format)!,
                parseResult.GetValue(csv),
                parseResult.GetValue(json),
                parseResult.GetValue(chart));
            try
            {
                return await RunAsync(settings, cancellationToken).ConfigureAwait(false);
            }
            catch (BenchUsageException ex)
            {
                Console.Error.WriteLine($"nbdqcow bench: {ex.Message}");
                return 2;
            }
        });
        return command;
    }

    private sealed record Settings(string? Image, string? Dir, string Modes, string Workloads, double Seconds, string Size, string Format, string? Csv, string? Json, string? Chart);

    private sealed record Measurement(CacheMode Mode, BenchWorkload Workload, BenchLoadResult Load, double CpuSecondsPerGiB, double PeakRssMiB);

    private sealed class BenchUsageException(string message) : Exception(message);

    private static async Task<int> RunAsync(Settings settings, CancellationToken cancellationToken)
    {
        if ((settings.Image is null) == (settings.Dir is null))
        {
            throw new BenchUsageException("give exactly one of --image PATH or --dir DIR");
        }
        if (settings.Seconds <= 0 || double.IsNaN(settings.Seconds))
        {
            throw new BenchUsageException("--seconds must be positive");
        }
        var modes = ParseModes(settings.Modes);
        var workloads = ParseWorkloads(settings.Workloads);
        var regionBytes = ParseSize(settings.Size);
        // The registry says which formats can be created and which file extension each one's images carry.
        var format = ImageFormats.Find(settings.Format) is { CreateExtension: not null } found && found.Has(ImageFormatFeatures.Create)
            ? found
            : throw new BenchUsageException($"--format: '{settings.Format}' is not a format the bench can create (allowed: {string.Join(", ", CreatableFormats())})");
        var extension = format.CreateExtension!;
        if (settings.Image is not null && !File.Exists(settings.Image))
        {
            throw new BenchUsageException($"no such image: {settings.Image}");
        }
        if (settings.Dir is not null && !Directory.Exists(settings.Dir))
        {
            throw new BenchUsageException($"no such directory: {settings.Dir}");
        }
        // Checked before minutes of measuring, not after: the chart is SVG, and an SVG named .png would open as a broken image.
        if (settings.Chart is not null && !settings.Chart.EndsWith(".svg", StringComparison.OrdinalIgnoreCase))
        {
            throw new BenchUsageException($"--chart draws an SVG file: name it with .svg (e.g. {Path.ChangeExtension(Path.GetFileName(settings.Chart), ".svg")})");
        }

        var (executable, prefix) = ServerExecutable();
        var parent = settings.Dir ?? Path.GetDirectoryName(Path.GetFullPath(settings.Image!))!;
        var workDir = Path.Combine(parent, $".nbdqcow-bench-{Guid.NewGuid().ToString("N")[..12]}");
        Directory.CreateDirectory(workDir);
        var measurements = new List<Measurement>();
        var failures = new List<(CacheMode Mode, string Message)>();
        string? setupFailure = null;
        try
        {
            await AnsiConsole.Progress()
                .AutoClear(false)
                .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn())
                .StartAsync(async progress =>
                {
                    string template;
                    if (settings.Dir is not null)
                    {
                        template = Path.Combine(workDir, "template" + extension);
                        var fill = progress.AddTask($"create and fill a {FormatBytes(regionBytes)} {settings.Format.ToLowerInvariant()} image", maxValue: 1);
                        try
                        {
                            await CreateFilledImageAsync(executable, prefix, format, template, regionBytes, fill, cancellationToken).ConfigureAwait(false);
                        }
                        catch (Exception ex) when (ex is not OperationCanceledException)
                        {
                            fill.StopTask();
                            setupFailure = $"could not create the test image: {ex.Message}";
                            return;
                        }
                    }
                    else
                    {
                        template = Path.GetFullPath(settings.Image!);
                    }

                    var tasks = new Dictionary<(CacheMode, BenchWorkload), ProgressTask>();
                    foreach (var mode in modes)
                    {
                        foreach (var w in workloads)
                        {
                            tasks[(mode, w)] = progress.AddTask($"{mode.ToCliName(),-12} {w.Name}", autoStart: false, maxValue: 1);
                        }
                    }
                    foreach (var mode in modes)
                    {
                        try
                        {
                            await MeasureModeAsync(executable, prefix, template, workDir, mode, workloads, settings.Seconds, regionBytes,
                                tasks, measurements, cancellationToken).ConfigureAwait(false);
                        }
                        catch (Exception ex) when (ex is not OperationCanceledException)
                        {
                            failures.Add((mode, ex.Message));
                            foreach (var w in workloads)
                            {
                                tasks[(mode, w)].Description = $"{mode.ToCliName(),-12} {w.Name} (failed)";
                                tasks[(mode, w)].StopTask();
                            }
                        }
                    }
                }).ConfigureAwait(false);
        }
        finally
        {
            try
            {
                Directory.Delete(workDir, recursive: true);
            }
            catch (IOException ex)
            {
                Console.Error.WriteLine($"nbdqcow bench: could not remove {workDir}: {ex.Message}");
            }
        }

        if (setupFailure is not null)
        {
            Console.Error.WriteLine($"nbdqcow bench: {setupFailure}");
            return 1;
        }
        PrintReport(modes, workloads, measurements, failures);
        if (settings.Csv is not null)
        {
            WriteCsv(settings.Csv, measurements);
            AnsiConsole.MarkupLine($"CSV written to [bold]{Markup.Escape(settings.Csv)}[/]");
        }
        if (settings.Json is not null)
        {
            WriteJson(settings.Json, modes, measurements, failures, settings.Image ?? settings.Dir!);
            AnsiConsole.MarkupLine($"JSON written to [bold]{Markup.Escape(settings.Json)}[/]");
        }
        if (settings.Chart is not null)
        {
            WriteChart(settings.Chart, modes, workloads, measurements, settings.Image ?? settings.Dir!);
            AnsiConsole.MarkupLine($"chart written to [bold]{Markup.Escape(settings.Chart)}[/]");
        }
        return failures.Count == 0 ? 0 : 1;
    }

    private static IEnumerable<string> CreatableFormats() =>
        ImageFormats.All.Where(f => f.CreateExtension is not null && f.Has(ImageFormatFeatures.Create)).Select(f => f.Name);

    private static async Task CreateFilledImageAsync(string executable, IReadOnlyList<string> prefix, ImageFormat format, string template, ulong size,
        ProgressTask task, CancellationToken cancellationToken)
    {
        // Created here with the image library, then written full through a server, so reads hit allocated clusters.
        format.Create(template, (long)size);
        var arguments = new List<string>(prefix) { template, "--cache", CacheMode.Writeback.ToCliName() };
        await using var server = await BenchServerProcess.StartAsync(executable, arguments, ServerStartTimeout, cancellationToken).ConfigureAwait(false);
        var generator = new BenchLoadGenerator("127.0.0.1", server.Port);
        await generator.FillAsync(size, new Progress<double>(f => task.Value = f), cancellationToken).ConfigureAwait(false);
        var exitCode = await server.StopAsync(ServerStopTimeout).ConfigureAwait(false);
        if (exitCode != 0)
        {
            throw new InvalidOperationException($"nbdqcow serve exited with {exitCode} after filling the image: {server.Output.Trim()}");
        }
        task.Value = 1;
        task.StopTask();
    }

    private static async Task MeasureModeAsync(string executable, IReadOnlyList<string> prefix, string template, string workDir, CacheMode mode,
        IReadOnlyList<BenchWorkload> workloads, double seconds, ulong regionBytes, Dictionary<(CacheMode, BenchWorkload), ProgressTask> tasks,
        List<Measurement> measurements, CancellationToken cancellationToken)
    {
        var copy = Path.Combine(workDir, $"{mode.ToCliName()}{Path.GetExtension(template)}");
        File.Copy(template, copy, overwrite: true);
        try
        {
            var arguments = new List<string>(prefix) { copy, "--cache", mode.ToCliName() };
            await using var server = await BenchServerProcess.StartAsync(executable, arguments, ServerStartTimeout, cancellationToken).ConfigureAwait(false);
            var generator = new BenchLoadGenerator("127.0.0.1", server.Port);
            foreach (var workload in workloads)
            {
                var task = tasks[(mode, workload)];
                task.StartTask();
                server.ResetPeakRss();
                var cpuBefore = server.CpuSeconds();
                var load = await generator.RunAsync(workload, TimeSpan.FromSeconds(seconds), regionBytes,
                    new Progress<double>(f => task.Value = f), cancellationToken).ConfigureAwait(false);
                var cpu = server.CpuSeconds() - cpuBefore;
                var gib = load.Bytes / (double)(1L << 30);
                measurements.Add(new Measurement(mode, workload, load, gib > 0 ? cpu / gib : double.NaN, server.PeakRssBytes() / (1024.0 * 1024.0)));
                task.Value = 1;
                task.StopTask();
            }
            var exitCode = await server.StopAsync(ServerStopTimeout).ConfigureAwait(false);
            if (exitCode != 0)
            {
                throw new InvalidOperationException($"nbdqcow serve --cache {mode.ToCliName()} exited with {exitCode} on SIGTERM: {server.Output.Trim()}");
            }
        }
        finally
        {
            File.Delete(copy);
        }
    }

    private static void PrintReport(IReadOnlyList<CacheMode> modes, IReadOnlyList<BenchWorkload> workloads, List<Measurement> measurements,
        List<(CacheMode Mode, string Message)> failures)
    {
        foreach (var mode in modes)
        {
            var table = new Table()
                .Title($"[bold]--cache {mode.ToCliName()}[/]")
                .AddColumn(new TableColumn("workload").NoWrap())
                .AddColumn(new TableColumn("IOPS").RightAligned())
                .AddColumn(new TableColumn("MB/s").RightAligned())
                .AddColumn(new TableColumn("p50 µs").RightAligned())
                .AddColumn(new TableColumn("p99 µs").RightAligned())
                .AddColumn(new TableColumn("CPU s/GiB").RightAligned())
                .AddColumn(new TableColumn("RSS MiB").RightAligned());
            foreach (var w in workloads)
            {
                var m = measurements.Find(x => x.Mode == mode && x.Workload == w);
                if (m is null)
                {
                    table.AddRow(w.Name, "-", "-", "-", "-", "-", "-");
                    continue;
                }
                table.AddRow(w.Name, m.Load.Iops.ToString("N0", CultureInfo.InvariantCulture),
                    m.Load.MegabytesPerSecond.ToString("N1", CultureInfo.InvariantCulture),
                    m.Load.P50Microseconds.ToString("N0", CultureInfo.InvariantCulture),
                    m.Load.P99Microseconds.ToString("N0", CultureInfo.InvariantCulture),
                    m.CpuSecondsPerGiB.ToString("N2", CultureInfo.InvariantCulture),
                    m.PeakRssMiB.ToString("N0", CultureInfo.InvariantCulture));
            }
            AnsiConsole.Write(table);
            AnsiConsole.MarkupLine($"  after a power loss:   {Markup.Escape(BenchModeGuarantee.AfterPowerLoss(mode))}");
            AnsiConsole.MarkupLine($"  after a process kill: {Markup.Escape(BenchModeGuarantee.AfterProcessKill(mode))}");
            foreach (var (failedMode, message) in failures)
            {
                if (failedMode == mode)
                {
                    AnsiConsole.MarkupLine($"  [red]failed:[/] {Markup.Escape(message)}");
                }
            }
            AnsiConsole.WriteLine();
        }
    }

    private static void WriteCsv(string path, List<Measurement> measurements)
    {
        var text = new StringBuilder("mode,workload,iops,mb_per_s,p50_us,p99_us,reads,writes,flushes,bytes,seconds,server_cpu_s_per_gib,peak_rss_mib\n");
        foreach (var m in measurements)
        {
            text.Append(CultureInfo.InvariantCulture,
                $"{m.Mode.ToCliName()},{m.Workload.Name},{m.Load.Iops:F1},{m.Load.MegabytesPerSecond:F2},{m.Load.P50Microseconds:F1},{m.Load.P99Microseconds:F1},"
                + $"{m.Load.Reads},{m.Load.Writes},{m.Load.Flushes},{m.Load.Bytes},{m.Load.Seconds:F3},{m.CpuSecondsPerGiB:F3},{m.PeakRssMiB:F1}\n");
        }
        File.WriteAllText(path, text.ToString());
    }

    /// <summary>The CSV's figures with their units in the names, plus what each mode promises and which modes failed.</summary>
    private static void WriteJson(string path, IReadOnlyList<CacheMode> modes, List<Measurement> measurements,
        List<(CacheMode Mode, string Message)> failures, string target)
    {
        using var stream = File.Create(path);
        using var json = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true });
        json.WriteStartObject();
        json.WriteString("target", Path.GetFullPath(target));
        json.WriteStartArray("modes");
        foreach (var mode in modes)
        {
            json.WriteStartObject();
            json.WriteString("mode", mode.ToCliName());
            json.WriteString("after_power_loss", BenchModeGuarantee.AfterPowerLoss(mode));
            json.WriteString("after_process_kill", BenchModeGuarantee.AfterProcessKill(mode));
            var failure = failures.Find(f => f.Mode == mode);
            if (failure.Message is not null)
            {
                json.WriteString("failed", failure.Message);
            }
            json.WriteEndObject();
        }
        json.WriteEndArray();
        json.WriteStartArray("results");
        foreach (var m in measurements)
        {
            json.WriteStartObject();
            json.WriteString("mode", m.Mode.ToCliName());
            json.WriteString("workload", m.Workload.Name);
            json.WriteNumber("iops", Math.Round(m.Load.Iops, 1));
            json.WriteNumber("mb_per_s", Math.Round(m.Load.MegabytesPerSecond, 2));
            json.WriteNumber("p50_us", Math.Round(m.Load.P50Microseconds, 1));
            json.WriteNumber("p99_us", Math.Round(m.Load.P99Microseconds, 1));
            json.WriteNumber("reads", m.Load.Reads);
            json.WriteNumber("writes", m.Load.Writes);
            json.WriteNumber("flushes", m.Load.Flushes);
            json.WriteNumber("bytes", m.Load.Bytes);
            json.WriteNumber("seconds", Math.Round(m.Load.Seconds, 3));
            // NaN (no bytes moved) has no JSON spelling: null.
            if (double.IsFinite(m.CpuSecondsPerGiB))
            {
                json.WriteNumber("server_cpu_s_per_gib", Math.Round(m.CpuSecondsPerGiB, 3));
            }
            else
            {
                json.WriteNull("server_cpu_s_per_gib");
            }
            json.WriteNumber("peak_rss_mib", Math.Round(m.PeakRssMiB, 1));
            json.WriteEndObject();
        }
        json.WriteEndArray();
        json.WriteEndObject();
    }

    private static void WriteChart(string path, IReadOnlyList<CacheMode> modes, IReadOnlyList<BenchWorkload> workloads, List<Measurement> measurements, string target)
    {
        var groups = new List<BenchChartWriter.Group>();
        foreach (var w in workloads)
        {
            var bars = new List<BenchChartWriter.Bar>();
            foreach (var mode in modes)
            {
                var m = measurements.Find(x => x.Mode == mode && x.Workload == w);
                bars.Add(m is null
                    ? new BenchChartWriter.Bar(mode.ToCliName(), 0, "failed")
                    : new BenchChartWriter.Bar(mode.ToCliName(), m.Load.Iops,
                        string.Create(CultureInfo.InvariantCulture, $"{m.Load.Iops:N0} IOPS · {m.Load.MegabytesPerSecond:N1} MB/s · p99 {m.Load.P99Microseconds:N0} µs")));
            }
            groups.Add(new BenchChartWriter.Group($"{w.Name}: {w.Description}", bars));
        }
        BenchChartWriter.Write(path, $"nbdqcow bench on {Path.GetFullPath(target)}", groups);
    }

    /// <summary>Environment variable naming the `nbdqcow` server executable the bench starts; the launcher sets it.</summary>
    public const string ServerVariable = "NBDQCOW_BENCH_SERVER";

    private static (string Executable, IReadOnlyList<string> Prefix) ServerExecutable()
    {
        var named = Environment.GetEnvironmentVariable(ServerVariable);
        var path = string.IsNullOrEmpty(named) ? Path.Combine(AppContext.BaseDirectory, "nbdqcow") : named;
        if (!File.Exists(path))
        {
            throw new BenchUsageException(string.IsNullOrEmpty(named)
                ? $"cannot find the nbdqcow server beside the bench ({path}): run the bench as `./nbdqcow bench`, or set {ServerVariable} to the nbdqcow executable"
                : $"{ServerVariable}={named}: no such file; set it to the nbdqcow executable, or run the bench as `./nbdqcow bench`");
        }
        // A framework-dependent build without an app host: start the server's assembly through dotnet.
        if (path.EndsWith(".dll", StringComparison.OrdinalIgnoreCase))
        {
            return ("dotnet", [path]);
        }
        return (path, []);
    }

    private static List<CacheMode> ParseModes(string text)
    {
        var modes = new List<CacheMode>();
        var names = text.Trim().Equals("all", StringComparison.OrdinalIgnoreCase) ? CacheModeInfo.CliNames : text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        foreach (var name in names)
        {
            if (!CacheModeInfo.TryParse(name, out var mode))
            {
                throw new BenchUsageException($"unknown cache mode '{name}' (modes: all, {string.Join(", ", CacheModeInfo.CliNames)})");
            }
            if (!modes.Contains(mode))
            {
                modes.Add(mode);
            }
        }
        if (modes.Count == 0)
        {
            throw new BenchUsageException("--modes names no mode");
        }
        return modes;
    }

    private static List<BenchWorkload> ParseWorkloads(string text)
    {
        if (text.Trim().Equals("all", StringComparison.OrdinalIgnoreCase))
        {
            return [.. BenchWorkload.All];
        }
        var workloads = new List<BenchWorkload>();
        foreach (var name in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var workload = BenchWorkload.Find(name)
                ?? throw new BenchUsageException($"unknown workload '{name}' (workloads: all, {string.Join(", ", WorkloadNames())})");
            if (!workloads.Contains(workload))
            {
                workloads.Add(workload);
            }
        }
        if (workloads.Count == 0)
        {
            throw new BenchUsageException("--workload names no workload");
        }
        return workloads;
    }

    private static IEnumerable<string> WorkloadNames()
    {
        foreach (var w in BenchWorkload.All)
        {
            yield return w.Name;
        }
    }

    /// <summary>Sizes like 1G, 256M, 65536 (binary units), at least 1 MiB and a multiple of it.</summary>
    private static ulong ParseSize(string text)
    {
        var t = text.Trim().ToUpperInvariant().TrimEnd('B').TrimEnd('I');
        var shift = t.Length > 0 ? t[^1] switch { 'K' => 10, 'M' => 20, 'G' => 30, 'T' => 40, _ => 0 } : 0;
        var digits = shift == 0 ? t : t[..^1];
        if (!ulong.TryParse(digits, NumberStyles.None, CultureInfo.InvariantCulture, out var value) || value == 0)
        {
            throw new BenchUsageException($"--size: cannot read '{text}' (examples: 1G, 256M)");
        }
        var bytes = value << shift;
        if (bytes < (1 << 20) || bytes % (1 << 20) != 0)
        {
            throw new BenchUsageException("--size must be a whole number of MiB");
        }
        return bytes;
    }

    private static string FormatBytes(ulong bytes)
        => bytes >= 1UL << 30 && bytes % (1UL << 30) == 0 ? $"{bytes >> 30} GiB" : $"{bytes >> 20} MiB";
}
