using Microsoft.Extensions.Logging;

namespace NbdQcow.Server.Logging;

/// <summary>
/// Builds the server's logger: a Microsoft.Extensions.Logging factory (level filtering) over <see cref="ServerLogWriter"/>
/// on stderr (stdout carries only the "listening" line), with journal priority prefixes when stderr is the systemd journal.
/// </summary>
public static class ServerLogging
{
    public const string CategoryName = "NbdQcow";

    /// <summary>--verbose: debug and up; --quiet: warnings and up; otherwise info and up.</summary>
    public static LogLevel MinimumLevel(bool verbose, bool quiet) =>
        verbose ? LogLevel.Debug : quiet ? LogLevel.Warning : LogLevel.Information;

    /// <remarks>
    /// The factory is built directly, not through LoggerFactory.Create: that builds a dependency-injection container,
    /// whose generic types the native binary constructs at run time, a tenth of its start-up before listening.
    /// </remarks>
    public static ILoggerFactory CreateFactory(LogLevel minimum, bool journalPriorities) =>
        new LoggerFactory([new ServerLogWriter(Console.Error, journalPriorities)], new LoggerFilterOptions { MinLevel = minimum });

    /// <summary>
    /// True when systemd connected stderr to the journal: JOURNAL_STREAM ("DEVICE:INODE") names the stream stderr
    /// still is. A child whose stderr was redirected elsewhere keeps the variable, so the inode is compared (the
    /// device number is not visible without fstat; the inode of a socket or pipe is unique on its own).
    /// </summary>
    public static bool StderrIsJournal()
    {
        var stream = Environment.GetEnvironmentVariable("JOURNAL_STREAM");
        if (string.IsNullOrEmpty(stream)) return false;
        var colon = stream.IndexOf(':');
        if (colon < 0 || !ulong.TryParse(stream.AsSpan(colon + 1), out var inode)) return false;
        string? target;
        try
        {
            target = new FileInfo("/proc/self/fd/2").LinkTarget;
        }
        catch (IOException)
        {
            return false;
        }
        catch (UnauthorizedAccessException)
        {
            return false;
        }
        // A socket or pipe reads "socket:[INODE]" / "pipe:[INODE]".
        if (target is null) return false;
        var open = target.IndexOf('[');
        return open >= 0 && target.EndsWith(']') && ulong.TryParse(target.AsSpan(open + 1, target.Length - open - 2), out var actual)
            && actual == inode;
    }
}
