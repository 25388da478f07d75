using System.CommandLine;

namespace NbdQcow.Server.Cli;

/// <summary>`nbdqcow recover`.</summary>
internal static class RecoverCommand
{
    public static Command Create()
    {
        var command = new Command("recover", "recover (being built)");
        command.SetAction(_ =>
        {
            Console.Error.WriteLine("nbdqcow recover: not available in this build yet");
            return 2;
        });
        return command;
    }
}
