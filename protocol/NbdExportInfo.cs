namespace NbdQcow.Protocol;

/// <summary>What a client learned about an export during negotiation.</summary>
public sealed record NbdExportInfo
{
    public string Name { get; init; } = "";
    public ulong Size { get; init; }
    public NbdTransmissionFlags Flags { get; init; }
    public string? Description { get; init; }
    public uint MinimumBlockSize { get; init; } = 1;
    public uint PreferredBlockSize { get; init; } = 4096;
    public uint MaximumBlockSize { get; init; } = NbdLimits.MaxPayload;
}
