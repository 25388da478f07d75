namespace NbdQcow.Image.Qcow2.Format;

/// <summary>One internal snapshot from the snapshot table.</summary>
public sealed record Qcow2Snapshot
{
    public required ulong L1TableOffset { get; init; }
    public required uint L1Size { get; init; }
    public required string Id { get; init; }
    public required string Name { get; init; }
    public uint DateSeconds { get; init; }
    public uint DateNanoseconds { get; init; }
    public ulong VmClockNanoseconds { get; init; }
    /// <summary>VM state size (the 64-bit extra-data field when present, else the 32-bit one).</summary>
    public ulong VmStateSize { get; init; }
    /// <summary>Virtual disk size when the snapshot was taken (extra data), or null for old snapshots.</summary>
    public ulong? VirtualSize { get; init; }
    /// <summary>Instruction count (extra data, record/replay), or null.</summary>
    public ulong? InstructionCount { get; init; }
    /// <summary>The whole extra-data area as stored (kept byte for byte on rewrite).</summary>
    public byte[] ExtraData { get; init; } = [];

    public DateTimeOffset Date => DateTimeOffset.FromUnixTimeSeconds(DateSeconds).AddTicks(DateNanoseconds / 100);
}
