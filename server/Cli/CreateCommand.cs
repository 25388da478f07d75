using System.CommandLine;

namespace NbdQcow.Server.Cli;

/// <summary>`nbdqcow create`.</summary>
internal static class CreateCommand
{
    public static Command Create()
    {
        var command = new Command("create", "create (being built)");
        command.SetAction(_ =>
        {
            Console.Error.WriteLine("nbdqcow create: not available in this build yet");
            return 2;
        });
        return command;
    }
}
