namespace NbdQcow.Tests.Crash.Oracle;

/// <summary>What a 512-byte sector of the device holds, decoded from its pattern.</summary>
public readonly record struct SectorValue(SectorValueKind Kind, int OpId = 0, long WrittenForSector = -1)
{
    public static readonly SectorValue Zero = new(SectorValueKind.Zero);

    public override string ToString() => Kind switch
    {
        SectorValueKind.Zero => "zeroes",
        SectorValueKind.Written => $"op {OpId}",
        _ => "garbage",
    };
}
