using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Logging.Console;
using Microsoft.Extensions.Options;

namespace NbdQcow.Server.Logging;

/// <summary>
/// One line per entry: "nbdqcow: warning: message" (the texts users and tests grep for). No timestamps: the
/// journal adds its own, and a terminal does not need them. Under systemd each line starts with the priority
/// prefix "&lt;4&gt;" that journald reads as the entry's level and strips.
/// </summary>
public sealed class ServerLogFormatter : ConsoleFormatter, IDisposable
{
    public const string FormatterName = "nbdqcow";

    private readonly IDisposable? _reload;
    private ServerLogFormatterOptions _options;

    public ServerLogFormatter(IOptionsMonitor<ServerLogFormatterOptions> options) : base(FormatterName)
    {
        _options = options.CurrentValue;
        _reload = options.OnChange(changed => _options = changed);
    }

    public override void Write<TState>(in LogEntry<TState> logEntry, IExternalScopeProvider? scopeProvider, TextWriter textWriter)
    {
        var message = logEntry.Formatter(logEntry.State, logEntry.Exception);
        if (message is null && logEntry.Exception is null) return;
        textWriter.Write(FormatLine(logEntry.LogLevel, message, logEntry.Exception, _options.JournalPriorities));
    }

    /// <summary>The whole line, newline included (also used where a line is written without a logger).</summary>
    public static string FormatLine(LogLevel level, string? message, Exception? exception, bool journalPriorities)
    {
        var text = exception is null ? message : $"{message} {exception}";
        var line = $"nbdqcow: {LevelName(level)}: {text}\n";
        return journalPriorities ? $"<{JournalPriority(level)}>{line}" : line;
    }

    public static string LevelName(LogLevel level) => level switch
    {
        LogLevel.Trace or LogLevel.Debug => "debug",
        LogLevel.Information => "info",
        LogLevel.Warning => "warning",
        LogLevel.Error => "error",
        _ => "critical",
    };

    /// <summary>syslog priorities as sd-daemon(3) lists them: 2 crit, 3 err, 4 warning, 6 info, 7 debug.</summary>
    public static int JournalPriority(LogLevel level) => level switch
    {
        LogLevel.Trace or LogLevel.Debug => 7,
        LogLevel.Information => 6,
        LogLevel.Warning => 4,
        LogLevel.Error => 3,
        _ => 2,
    };

    public void Dispose() => _reload?.Dispose();
}
