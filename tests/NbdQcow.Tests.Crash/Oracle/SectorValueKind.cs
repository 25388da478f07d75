namespace NbdQcow.Tests.Crash.Oracle;

public enum SectorValueKind
{
    Zero,
    /// <summary>The pattern one workload operation wrote to this very sector.</summary>
    Written,
    /// <summary>A valid pattern, but one written for another sector: data through a wrong mapping.</summary>
    Misplaced,
    /// <summary>Neither zero nor any pattern the workload wrote.</summary>
    Garbage,
}
