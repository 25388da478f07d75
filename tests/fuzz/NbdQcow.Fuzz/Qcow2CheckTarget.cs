using NbdQcow.Image.Qcow2.Check;

namespace NbdQcow.Fuzz;

/// <summary>
/// `nbdqcow check` on the input as a qcow2 file: the read-only scan (L1/L2, refcount table and blocks, snapshot
/// tables, bitmaps), then `--repair all` on a copy. The checker reports damage in its result (FatalError,
/// corruptions), so it must not throw at all.
/// </summary>
public sealed class Qcow2CheckTarget : IFuzzTarget
{
    public string Name => "qcow2-check";

    public string Description => "Qcow2Checker scan and --repair all, on the input as a qcow2 file in memory";

    public void Run(byte[] input)
    {
        var readOnly = new ReadOnlyHostFile(new MemoryHostFile("/fuzz/image.qcow2", input, readOnly: true));
        var first = Qcow2Checker.Check(readOnly);
        if (first.FatalError is not null) return;
        try
        {
            var repaired = Qcow2Checker.Check(new MemoryHostFile("/fuzz/image.qcow2", (byte[])input.Clone(), readOnly: false), Qcow2RepairMode.All);
            _ = repaired.IsClean;
        }
        catch (MemoryFileFullException)
        {
        }
    }
}
