namespace NbdQcow.Fuzz;

/// <summary>
/// One fuzz target: runs the code under test on one input. Returns normally for accepted input and for the
/// code's documented bad-input outcomes; anything else it throws is a crash the fuzzer records.
/// </summary>
public interface IFuzzTarget
{
    string Name { get; }

    /// <summary>One line for --list and the README.</summary>
    string Description { get; }

    void Run(byte[] input);
}
