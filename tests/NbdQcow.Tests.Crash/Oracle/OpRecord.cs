namespace NbdQcow.Tests.Crash.Oracle;

/// <summary>One request the workload sent, with the log ticks at which it started and was acknowledged.</summary>
public sealed class OpRecord
{
    public required int Id { get; init; }
    public required WorkloadStep Step { get; init; }
    public long StartTick { get; set; }
    public long AckTick { get; set; }
    /// <summary>Fake-clock time of the acknowledgement, since the run began.</summary>
    public TimeSpan AckTime { get; set; }
    /// <summary>From this tick on the contract says the op is durable; long.MaxValue = never promised.</summary>
    public long DurableFromTick { get; set; } = long.MaxValue;
    /// <summary>Why it is durable (for messages): "flush #12", "fua", "writethrough", "max dirty age".</summary>
    public string DurableBecause { get; set; } = "";
    /// <summary>The device answered an error (failing-storage runs): the op promises nothing, its data may or may not be there.</summary>
    public bool Failed { get; set; }

    public long FirstSector => Step.Offset / SectorPattern.SectorSize;
    public long SectorCount => Step.Length / SectorPattern.SectorSize;
}
