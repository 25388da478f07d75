namespace NbdQcow.Tests.Crash.Oracle;

/// <summary>One row of the crash table: format x mode x workload.</summary>
public sealed class CrashCaseResult
{
    public required string Format { get; init; }
    public required string Mode { get; set; }
    /// <summary>Host files the engine wrote (image, journal, ...), as recorded.</summary>
    public int HostFiles { get; set; }
    public required string Workload { get; init; }
    public int CrashPoints { get; set; }
    public int StatesChecked { get; set; }
    /// <summary>States byte-identical to one checked before in this case (checked against the oracle, not re-opened).</summary>
    public int DuplicateStates { get; set; }
    /// <summary>States the engine could not open or read, or whose metadata check failed.</summary>
    public int Corruptions { get; set; }
    /// <summary>States breaking rule 2 (durable data lost) or rule 3 (foreign data).</summary>
    public int Violations { get; set; }
    /// <summary>States with leaked clusters (allowed, repairable) and their total.</summary>
    public int StatesWithLeaks { get; set; }
    public long LeakedClusters { get; set; }
    public long UnflushedAtRisk { get; set; }
    public long UnflushedLost { get; set; }
    public int MissedBackgroundFlushes { get; set; }
    /// <summary>Requests the device failed (failing-storage runs only).</summary>
    public int FailedRequests { get; set; }
    public int HostWrites { get; set; }
    public int HostBarriers { get; set; }
    public TimeSpan Elapsed { get; set; }
    public List<string> Problems { get; } = [];

    public string LostText => UnflushedAtRisk == 0 ? "-" : $"{UnflushedLost}/{UnflushedAtRisk} ({100.0 * UnflushedLost / UnflushedAtRisk:0}%)";
}
