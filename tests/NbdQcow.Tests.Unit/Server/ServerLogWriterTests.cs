using Microsoft.Extensions.Logging;
using NbdQcow.Server.Logging;
using NbdQcow.Server.Nbd;

namespace NbdQcow.Tests.Unit.Server;

/// <summary>The server's log lines: levels filtered by the factory, plain or journal-prefixed, text printed as it is.</summary>
public sealed class ServerLogWriterTests
{
    private static (ServerLog Log, StringWriter Text, ILoggerFactory Factory) Create(LogLevel minimum, bool journal)
    {
        var text = new StringWriter();
        var factory = LoggerFactory.Create(builder => builder.SetMinimumLevel(minimum).AddProvider(new ServerLogWriter(text, journal)));
        return (new ServerLog(factory.CreateLogger(ServerLogging.CategoryName)), text, factory);
    }

    [Fact]
    public void Journal_lines_carry_the_sd_daemon_priority_of_their_level_and_nothing_else()
    {
        var (log, text, factory) = Create(LogLevel.Debug, journal: true);
        using var _ = factory;
        log.Debug("d");
        log.Info("i");
        log.Warn("w");
        log.Error("e");
        Assert.Equal("<7>nbdqcow: debug: d\n<6>nbdqcow: info: i\n<4>nbdqcow: warning: w\n<3>nbdqcow: error: e\n", text.ToString());
    }

    [Fact]
    public void Quiet_keeps_warnings_and_drops_info_and_debug_and_braces_are_printed_as_they_are()
    {
        var (log, text, factory) = Create(ServerLogging.MinimumLevel(verbose: false, quiet: true), journal: false);
        using var _ = factory;
        log.Debug("d");
        log.Info("i");
        log.Warn("export '{0}' {name}");
        Assert.False(log.Verbose);
        Assert.Equal("nbdqcow: warning: export '{0}' {name}\n", text.ToString());
    }
}
