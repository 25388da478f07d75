using System.CommandLine;
using NbdQcow.Server.Cli;

namespace NbdQcow.Server;

public static class Program
{
    /// <summary>Read once by the runtime's socket engine, at its first use: it must be set before any socket exists.</summary>
    private const string InlineSocketCompletions = "DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS";

    /// <summary>The command line as given, for serve --fork to start itself again.</summary>
    internal static IReadOnlyList<string> Arguments { get; private set; } = [];

    public static int Main(string[] args)
    {
        Arguments = args;
        // Socket completions run on the epoll thread instead of being handed to the thread pool: the receive loop
        // only decodes and dispatches, and the hand-off was the largest cost of a queue-depth-1 request
        // (perf/FINDINGS.md). A user can still set the variable to 0.
        if (Environment.GetEnvironmentVariable(InlineSocketCompletions) is null)
            Environment.SetEnvironmentVariable(InlineSocketCompletions, "1");
        var root = new RootCommand("nbdqcow: an NBD server for qcow2 and raw images, with verifiable durability")
        {
            ServeCommand.Create(),
            CreateCommand.Create(),
            InfoCommand.Create(),
            CheckCommand.Create(),
            RecoverCommand.Create(),
            ControlCommand.Create(),
        };
        // -V as well as --version, as qemu-img and nbdkit answer it.
        foreach (var option in root.Options)
        {
            if (option is VersionOption version) version.Aliases.Add("-V");
        }
        root.Subcommands.Add(Cli.Docs.DocsCommand.Create(() => root));
        var parseResult = root.Parse(args);
        // Usage errors (unknown option, missing argument) exit 2 in every command, as invalid configuration does.
        return UsageErrors.Report(parseResult, args) ?? parseResult.Invoke();
    }
}
