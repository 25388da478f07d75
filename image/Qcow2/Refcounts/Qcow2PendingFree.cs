using NbdQcow.Cache.Metadata;

namespace NbdQcow.Image.Qcow2.Refcounts;

/// <summary>A reference drop waiting until the table that no longer points at the range is durable.</summary>
public readonly record struct Qcow2PendingFree(long HostOffset, long Length, MetadataTable ReferencingTable);
