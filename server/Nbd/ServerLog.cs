using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace NbdQcow.Server.Nbd;

/// <summary>
/// The server's log lines, written through <see cref="ILogger"/> (level filtering, the plain or journal format:
/// see <see cref="Logging.ServerLogging"/>). Messages are plain text, never templates, so a brace in a file name or a
/// client's export name is printed as it is.
/// </summary>
public sealed class ServerLog(ILogger logger)
{
    private static readonly Func<string, Exception?, string> PlainText = static (message, _) => message;

    public static ServerLog Quiet { get; } = new(NullLogger.Instance);

    /// <summary>True when debug lines are written (--verbose): callers skip building a debug message otherwise.</summary>
    public bool Verbose => logger.IsEnabled(LogLevel.Debug);

    public void Error(string message) => logger.Log(LogLevel.Error, default, message, null, PlainText);

    public void Warn(string message) => logger.Log(LogLevel.Warning, default, message, null, PlainText);

    public void Info(string message) => logger.Log(LogLevel.Information, default, message, null, PlainText);

    public void Debug(string message) => logger.Log(LogLevel.Debug, default, message, null, PlainText);
}
