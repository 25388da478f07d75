using System.CommandLine;

namespace NbdQcow.Server.Cli;

/// <summary>`nbdqcow info`.</summary>
internal static class InfoCommand
{
    public static Command Create()
    {
        var command = new Command("info", "info (being built)");
        command.SetAction(_ =>
        {
            Console.Error.WriteLine("nbdqcow info: not available in this build yet");
            return 2;
        });
        return command;
    }
}
