namespace NbdQcow.Tests.Crash.Oracle;

public enum WorkloadStepKind
{
    Write,
    Flush,
    Zero,
    Trim,
    /// <summary>Moves the fake clock on (drives max dirty age).</summary>
    Advance,
}
