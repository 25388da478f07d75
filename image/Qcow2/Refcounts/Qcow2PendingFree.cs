using NbdQcow.Cache.Metadata;

namespace NbdQcow.Image.Qcow2.Refcounts;

/// <summary>
/// A reference drop waiting until the table that no longer points at the range is durable. <see cref="Sequence"/>
/// orders the frees, so a durable flush knows which ones it covered even if the table changed again meanwhile.
/// </summary>
public readonly record struct Qcow2PendingFree(long HostOffset, long Length, MetadataTable ReferencingTable, long Sequence);
