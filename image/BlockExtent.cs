namespace NbdQcow.Image;

/// <summary>One run of bytes with the same allocation state (base:allocation semantics).</summary>
public readonly record struct BlockExtent(long Length, BlockExtentFlags Flags);
