using System.CommandLine;
using NbdQcow.Server.Cli;

namespace NbdQcow.Server;

public static class Program
{
    public static int Main(string[] args)
    {
        var root = new RootCommand("nbdqcow: an NBD server for qcow2 and raw images, with verifiable durability")
        {
            ServeCommand.Create(),
            CreateCommand.Create(),
            InfoCommand.Create(),
            CheckCommand.Create(),
            RecoverCommand.Create(),
            BenchCommand.Create(),
        };
        var parseResult = root.Parse(args);
        var exitCode = parseResult.Invoke();
        // Usage errors (unknown option, missing argument) exit 2, as invalid configuration does.
        return parseResult.Errors.Count > 0 ? 2 : exitCode;
    }
}
