using System.CommandLine;

namespace NbdQcow.Server.Cli;

/// <summary>`nbdqcow serve`.</summary>
internal static class ServeCommand
{
    public static Command Create()
    {
        var command = new Command("serve", "serve (being built)");
        command.SetAction(_ =>
        {
            Console.Error.WriteLine("nbdqcow serve: not available in this build yet");
            return 2;
        });
        return command;
    }
}
