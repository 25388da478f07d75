using System.CommandLine;

namespace NbdQcow.Server.Cli;

/// <summary>
/// `nbdqcow recover IMAGE --output FILE`: the spelling is part of the CLI contract; the recovery itself
/// (finding lost L2 tables, journal history) is not built yet, so the command says so and points at `check`.
/// </summary>
internal static class RecoverCommand
{
    public static Command Create()
    {
        var image = new Argument<string>("IMAGE") { Description = "The damaged qcow2 image (never written)." };
        var output = new Option<string>("--output") { Description = "Where the recovered image would be written.", Required = true };
        var command = new Command("recover", "Recover the data of a damaged qcow2 image into a new file (not available yet; see `nbdqcow check`).")
        {
            image, output,
        };
        command.SetAction(_ =>
        {
            Console.Error.WriteLine(
                "nbdqcow recover: not available in this version. Nothing was written. " +
                "Use `nbdqcow check IMAGE` to see what is wrong and `nbdqcow check IMAGE --repair leaks|all` to repair refcounts.");
            return 2;
        });
        return command;
    }
}
