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
        // serve and recover: usage errors (unknown option, missing argument) exit 2, as invalid configuration/input does.
        // Other commands keep their own codes (check follows qemu-img, where 2 means corruption).
        return parseResult.Errors.Count > 0 && parseResult.CommandResult.Command.Name is "serve" or "recover" ? 2 : exitCode;
    }
}
