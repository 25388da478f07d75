using System.CommandLine;

namespace NbdQcow.Server.Cli;

/// <summary>`nbdqcow check`.</summary>
internal static class CheckCommand
{
    public static Command Create()
    {
        var command = new Command("check", "check (being built)");
        command.SetAction(_ =>
        {
            Console.Error.WriteLine("nbdqcow check: not available in this build yet");
            return 2;
        });
        return command;
    }
}
