using NbdQcow.Image.Qcow2.Recover;

namespace NbdQcow.Fuzz;

/// <summary>
/// `nbdqcow recover` on the input as a damaged qcow2 file: the host cluster classifier, orphan L2 scan and
/// placement, snapshot views and the writer of the recovered image. Unusable input is a RecoveryInputException.
/// </summary>
public sealed class Qcow2RecoverTarget : IFuzzTarget
{
    public string Name => "recover";

    public string Description => "Qcow2Recovery (scanner, orphan placement, writer) on the input as a damaged image";

    public void Run(byte[] input)
    {
        string folder = ScratchFolder.Fresh();
        string image = Path.Combine(folder, "damaged.qcow2");
        File.WriteAllBytes(image, input);
        try
        {
            Qcow2Recovery.RunAsync(image, new RecoveryOptions { OutputPath = Path.Combine(folder, "recovered.qcow2"), Force = true, FillFromSnapshots = true })
                .GetAwaiter().GetResult();
        }
        catch (Exception e) when (ExpectedFailures.IsBadInputOutcome(e))
        {
        }
    }
}
