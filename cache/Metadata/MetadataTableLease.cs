namespace NbdQcow.Cache.Metadata;

/// <summary>A pinned cached table; disposing unpins it so the cache may evict it again.</summary>
public readonly struct MetadataTableLease : IDisposable
{
    private readonly MetadataTableCache? _cache;

    internal MetadataTableLease(MetadataTableCache cache, MetadataTable table)
    {
        _cache = cache;
        Table = table;
    }

    public MetadataTable Table { get; }

    public Span<byte> Data => Table.Data;

    public void Dispose() => _cache?.Unpin(Table);
}
