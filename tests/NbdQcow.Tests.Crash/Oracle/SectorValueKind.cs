namespace NbdQcow.Tests.Crash.Oracle;

public enum SectorValueKind
{
    Zero,
    /// <summary>The pattern one workload operation wrote (for the sector in <see cref="SectorValue.WrittenForSector"/>).</summary>
    Written,
    /// <summary>Neither zero nor any pattern the workload wrote.</summary>
    Garbage,
}
