using System.CommandLine;

namespace NbdQcow.Server.Cli;

/// <summary>`nbdqcow bench`.</summary>
internal static class BenchCommand
{
    public static Command Create()
    {
        var command = new Command("bench", "bench (being built)");
        command.SetAction(_ =>
        {
            Console.Error.WriteLine("nbdqcow bench: not available in this build yet");
            return 2;
        });
        return command;
    }
}
