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
        return root.Parse(args).Invoke();
    }
}
