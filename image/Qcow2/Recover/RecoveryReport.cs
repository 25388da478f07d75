namespace NbdQcow.Image.Qcow2.Recover;

/// <summary>Everything a recovery run found, placed and could not place. Message lists are capped; counts are exact.</summary>
public sealed class RecoveryReport
{
    public const int MaxMessages = 1000;

    public required string ImagePath { get; init; }
    public required string OutputPath { get; init; }
    public required RecoveryOutputFormat OutputFormat { get; init; }
    /// <summary>"active" or the snapshot recovered ("snapshot NAME").</summary>
    public string View { get; internal set; } = "active";
    public long VirtualSize { get; internal set; }
    public int ClusterSize { get; internal set; }
    public long HostFileLength { get; internal set; }
    /// <summary>Summary of the project's consistency check on the damaged image (read-only).</summary>
    public string? CheckSummary { get; internal set; }

    public long DataClustersRecovered { get; internal set; }
    public long CompressedClustersRecovered { get; internal set; }
    public long ZeroClustersRecovered { get; internal set; }
    /// <summary>Guest clusters written from orphan L2 tables that recovery placed.</summary>
    public long ClustersFromOrphanTables { get; internal set; }
    /// <summary>Guest clusters written from snapshots into slots the recovered view lacks (--fill-from-snapshots).</summary>
    public long ClustersFilledFromSnapshots { get; internal set; }
    public long SlotsFilledFromSnapshots { get; internal set; }
    /// <summary>Bytes of recovered guest data written to the output (excluding zero clusters).</summary>
    public long BytesWritten { get; internal set; }

    public long ClustersScanned { get; internal set; }
    public long StaleRefcountBlocks { get; internal set; }
    public long StaleMetadataTables { get; internal set; }
    public long OrphanL2Tables { get; internal set; }
    public long OrphanL2TablesPlaced { get; internal set; }
    public long OrphanDataClusters { get; internal set; }
    /// <summary>Clusters written to lost+found (unplaced L2 tables, their data, orphan data).</summary>
    public long LostClusters { get; internal set; }
    public string? LostAndFoundPath { get; internal set; }
    /// <summary>Host clusters (or compressed streams) two guest offsets claim that no evidence decided: placed at neither.</summary>
    public long ConflictingClusters { get; internal set; }
    /// <summary>Compressed streams no table maps, found by decoding inside host clusters shared with live streams.</summary>
    public long CompressedStreamsFound { get; internal set; }

    public List<OrphanL2Decision> OrphanDecisions { get; } = new();
    /// <summary>Per guest range: in place from which evidence, saved to lost+found, or lost (capped; <see cref="RangeCount"/> is exact).</summary>
    public List<RecoveredRange> Ranges { get; } = new();
    public long RangeCount { get; private set; }
    public long FindingCount { get; private set; }
    public List<RecoveryFinding> Findings { get; } = new();
    /// <summary>Things the operator should know that are not damage (backing file not followed, snapshots filled).</summary>
    public List<string> Notes { get; } = new();

    /// <summary>Guest clusters not brought back in place: saved to lost+found only, or unreadable (see <see cref="RecoveryExitCode"/>).</summary>
    public long LostGuestClusters { get; internal set; }
    /// <summary>Clusters saved to lost+found that the (consistent) refcounts call free: leftovers of freed clusters, kept anyway.</summary>
    public long FreedLeftovers { get; internal set; }
    /// <summary>Orphan L2 tables judged stale (a deleted snapshot's, freed) by refcount and COPIED-flag evidence.</summary>
    public long StaleL2Tables { get; internal set; }

    /// <summary>One of <see cref="RecoveryExitCode"/>: clean, recovered completely from damage, or recovered with losses.</summary>
    public int ExitCode =>
        LostGuestClusters > 0 || LostClusters > FreedLeftovers ? RecoveryExitCode.RecoveredWithLosses
        : FindingCount > 0 ? RecoveryExitCode.RecoveredCompletely
        : RecoveryExitCode.Clean;

    /// <summary>Damage that cost guest data: <paramref name="clusters"/> guest clusters are not in the output.</summary>
    internal void Loss(string kind, string message, long clusters = 1)
    {
        LostGuestClusters += clusters;
        Damage(kind, message);
    }

    internal void Range(long guestOffset, long length, string outcome, string evidence)
    {
        if (length <= 0) return;
        if (Ranges.Count > 0 && Ranges[^1] is var last && last.Outcome == outcome && last.Evidence == evidence && last.GuestOffset + last.Length == guestOffset)
        {
            Ranges[^1] = last with { Length = last.Length + length };
            return;
        }
        RangeCount++;
        if (Ranges.Count < MaxMessages) Ranges.Add(new RecoveredRange(guestOffset, length, outcome, evidence));
    }

    internal void Damage(string kind, string message)
    {
        FindingCount++;
        if (Findings.Count < MaxMessages) Findings.Add(new RecoveryFinding(kind, message));
    }
}
