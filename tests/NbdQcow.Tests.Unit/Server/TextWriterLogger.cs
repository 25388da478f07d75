using Microsoft.Extensions.Logging;
using NbdQcow.Server.Logging;

namespace NbdQcow.Tests.Unit.Server;

/// <summary>An ILogger that writes the server's line format into a TextWriter at once, so a test can read the log it caused.</summary>
public sealed class TextWriterLogger(TextWriter writer, LogLevel minimum = LogLevel.Debug) : ILogger
{
    public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

    public bool IsEnabled(LogLevel logLevel) => logLevel >= minimum;

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
    {
        if (!IsEnabled(logLevel)) return;
        lock (writer)
        {
            writer.Write(ServerLogFormatter.FormatLine(logLevel, formatter(state, exception), null, journalPriorities: false));
        }
    }
}
