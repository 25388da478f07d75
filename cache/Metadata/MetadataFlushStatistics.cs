namespace NbdQcow.Cache.Metadata;

/// <summary>Counters of what a <see cref="MetadataTableCache"/> did to its host file (tests and diagnostics).</summary>
public sealed class MetadataFlushStatistics
{
    public long TablesLoaded;
    public long TablesWritten;
    /// <summary>Host write calls for tables (adjacent tables coalesced into one call).</summary>
    public long TableWriteCalls;
    public long Barriers;
    public long Evictions;
}
