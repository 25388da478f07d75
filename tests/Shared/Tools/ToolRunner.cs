using System.Diagnostics;

namespace NbdQcow.Tests.Shared;

/// <summary>
/// Runs the real clients the tests drive (qemu-img, qemu-io, nbdinfo, nbdcopy, nbdsh, fio, nbd-client and
/// python3-libnbd scripts through /usr/bin/python3) with a bounded run time, capturing exit code and output.
/// A missing tool fails the test with a message naming the Debian package that scripts/install-deps.sh installs.
/// </summary>
public static class ToolRunner
{
    public static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(120);

    /// <summary>The interpreter libnbd's Python binding is installed for (Debian's python3-libnbd).</summary>
    public const string Python = "/usr/bin/python3";

    private static readonly Dictionary<string, string> PackageOfTool = new(StringComparer.Ordinal)
    {
        ["qemu-img"] = "qemu-utils",
        ["qemu-io"] = "qemu-utils",
        ["qemu-nbd"] = "qemu-utils",
        ["nbdinfo"] = "libnbd-bin",
        ["nbdcopy"] = "libnbd-bin",
        ["nbdsh"] = "libnbd-bin",
        ["fio"] = "fio",
        ["nbd-client"] = "nbd-client",
        ["systemd-socket-activate"] = "systemd",
        ["man"] = "man-db",
        ["python3"] = "python3-libnbd",
        [Python] = "python3-libnbd",
    };

    private static readonly string[] ExtraSearchFolders = ["/usr/sbin", "/sbin", "/usr/bin", "/bin"];

    /// <summary>The folder a test project copies its libnbd Python scripts to (its scripts/ folder).</summary>
    public static string ScriptsFolder => Path.Combine(AppContext.BaseDirectory, "scripts");

    /// <summary>Runs <paramref name="tool"/> (a name looked up on PATH and in /usr/sbin, or an absolute path).</summary>
    public static async Task<ToolResult> RunAsync(string tool, IEnumerable<string> arguments, TimeSpan? timeout = null,
        string? standardInput = null, IReadOnlyDictionary<string, string>? environment = null,
        string? workingDirectory = null)
    {
        var executable = Locate(tool);
        var start = new ProcessStartInfo(executable)
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = workingDirectory ?? Environment.CurrentDirectory,
        };
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        if (environment is not null)
        {
            foreach (var (name, value) in environment)
            {
                start.Environment[name] = value;
            }
        }

        var commandLine = string.Join(' ', new[] { tool }.Concat(start.ArgumentList.Select(Quote)));
        var limit = timeout ?? DefaultTimeout;
        var clock = Stopwatch.StartNew();
        using var process = Process.Start(start)
            ?? throw new InvalidOperationException($"could not start {commandLine}");
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        try
        {
            if (standardInput is not null)
            {
                await process.StandardInput.WriteAsync(standardInput);
            }

            process.StandardInput.Close();
        }
        catch (IOException)
        {
            // The tool exited without reading its input; its exit code and output tell why.
        }

        using var deadline = new CancellationTokenSource(limit);
        try
        {
            await process.WaitForExitAsync(deadline.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            await process.WaitForExitAsync(CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(10));
            var partial = new ToolResult(commandLine, -1, await Drain(stdout), await Drain(stderr), clock.Elapsed);
            Assert.Fail(partial.Describe($"timed out after {limit.TotalSeconds:F0} s and was killed"));
        }

        return new ToolResult(commandLine, process.ExitCode, await Drain(stdout), await Drain(stderr), clock.Elapsed);
    }

    public static Task<ToolResult> RunAsync(string tool, params string[] arguments) => RunAsync(tool, arguments, null);

    /// <summary>The same, blocking: for the synchronous oracles of the unit and crash tests.</summary>
    public static ToolResult Run(string tool, IEnumerable<string> arguments, TimeSpan? timeout = null, string? workingDirectory = null) =>
        RunAsync(tool, arguments, timeout, workingDirectory: workingDirectory).GetAwaiter().GetResult();

    /// <summary>Runs one of the test project's libnbd scripts (its scripts/ folder) with /usr/bin/python3.</summary>
    public static Task<ToolResult> RunPythonScriptAsync(string scriptName, IEnumerable<string> arguments,
        TimeSpan? timeout = null)
    {
        var script = Path.Combine(ScriptsFolder, scriptName);
        Assert.True(File.Exists(script), $"script {script} is missing from the test output folder");
        return RunAsync(Python, new[] { "-u", script }.Concat(arguments), timeout);
    }

    /// <summary>Fails the test (never skips it) when a tool is not installed.</summary>
    public static string Locate(string tool)
    {
        if (Path.IsPathRooted(tool))
        {
            if (!File.Exists(tool))
            {
                Assert.Fail(MissingMessage(tool));
            }

            return tool;
        }

        var path = Environment.GetEnvironmentVariable("PATH") ?? "";
        foreach (var folder in path.Split(':', StringSplitOptions.RemoveEmptyEntries).Concat(ExtraSearchFolders))
        {
            var candidate = Path.Combine(folder, tool);
            if (File.Exists(candidate))
            {
                return candidate;
            }
        }

        Assert.Fail(MissingMessage(tool));
        return tool;
    }

    private static string MissingMessage(string tool)
    {
        var package = PackageOfTool.TryGetValue(tool, out var name) ? name : "the package providing it";
        return $"{tool} is not installed; scripts/install-deps.sh installs it (Debian package {package}). " +
               "This test never skips a missing tool.";
    }

    private static async Task<string> Drain(Task<string> output)
    {
        try
        {
            return await output.WaitAsync(TimeSpan.FromSeconds(10));
        }
        catch (TimeoutException)
        {
            return "(output not closed within 10 s: a child process still holds it)";
        }
    }

    private static string Quote(string argument) =>
        argument.Length > 0 && argument.All(c => char.IsLetterOrDigit(c) || "-_./:=,+@%".Contains(c))
            ? argument
            : "'" + argument.Replace("'", "'\\''") + "'";
}
