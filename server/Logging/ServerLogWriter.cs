using Microsoft.Extensions.Logging;

namespace NbdQcow.Server.Logging;

/// <summary>
/// The logging provider of the server: writes each entry as one <see cref="ServerLogFormat"/> line to a text writer
/// (stderr) before the caller goes on. Microsoft.Extensions.Logging.Console was tried and left out: it writes from a
/// background queue, so a line lagged the event it reports (a client heard of a failure before the log said it, a
/// test that read the log after the reply failed) and a SIGKILL lost whatever was still queued.
/// Level filtering is the <see cref="ILoggerFactory"/>'s; this writer writes whatever reaches it.
/// </summary>
public sealed class ServerLogWriter(TextWriter writer, bool journalPriorities) : ILoggerProvider, ILogger
{
    public ILogger CreateLogger(string categoryName) => this;

    public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

    public bool IsEnabled(LogLevel logLevel) => logLevel != LogLevel.None;

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
    {
        if (!IsEnabled(logLevel)) return;
        var line = ServerLogFormat.Line(logLevel, formatter(state, exception), exception, journalPriorities);
        lock (writer)
        {
            writer.Write(line);
            writer.Flush();
        }
    }

    public void Dispose()
    {
    }
}
