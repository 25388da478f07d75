using Microsoft.Extensions.Logging;

namespace NbdQcow.Server.Logging;

/// <summary>
/// One line per entry: "nbdqcow: warning: message" (the texts users and tests grep for). No timestamps: the journal
/// adds its own, and a terminal does not need them. For the systemd journal each line starts with the sd-daemon
/// priority prefix ("&lt;4&gt;"), which journald reads as the entry's level and strips.
/// </summary>
public static class ServerLogFormat
{
    public static string Line(LogLevel level, string message, Exception? exception, bool journalPriorities)
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
}
