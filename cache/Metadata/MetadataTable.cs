namespace NbdQcow.Cache.Metadata;

/// <summary>
/// One cached metadata table (an L2 table, a refcount block, a cluster of the L1 or refcount table):
/// a fixed-size byte image of the table at <see cref="Offset"/> in the host file. Owned by a
/// <see cref="MetadataTableCache"/>; callers change <see cref="Data"/> only while they hold it pinned
/// and under the image's metadata lock, then call <see cref="MetadataTableCache.MarkDirty"/>.
/// </summary>
public sealed class MetadataTable
{
    internal MetadataTable(long offset, byte[] data)
    {
        Offset = offset;
        Buffer = data;
    }

    /// <summary>Host file offset of the table.</summary>
    public long Offset { get; }

    internal byte[] Buffer { get; }

    /// <summary>The table's bytes (big-endian fields as on disk).</summary>
    public Span<byte> Data => Buffer;

    /// <summary>True while the cached content differs from what was last written to the host file.</summary>
    public bool IsDirty { get; internal set; }

    /// <summary>False once the table has been dropped from its cache (evicted or discarded).</summary>
    public bool IsCached { get; internal set; } = true;

    internal int PinCount;

    /// <summary>Epoch of the last write of this table to the host file; -1 when never written by this cache.</summary>
    internal long WrittenEpoch = -1;

    /// <summary>Highest epoch whose writes must be durable before this table may be written (data-before-table).</summary>
    internal long RequiredDurableEpoch = -1;

    /// <summary>Tables whose current content must be durable before this one may be written.</summary>
    internal List<MetadataTable>? DependsOn;

    internal long DirtySinceTimestamp;

    /// <summary>Journal mode: a committed image of this table is durable in the journal but not yet written in place.</summary>
    internal bool NotInPlace;

    internal LinkedListNode<MetadataTable>? LruNode;
}
