using Microsoft.Extensions.Logging.Console;

namespace NbdQcow.Server.Logging;

/// <summary>Options of <see cref="ServerLogFormatter"/>.</summary>
public sealed class ServerLogFormatterOptions : ConsoleFormatterOptions
{
    /// <summary>Start each line with the sd-daemon priority prefix (&lt;3&gt; error ... &lt;7&gt; debug) for the systemd journal.</summary>
    public bool JournalPriorities { get; set; }
}
