namespace NbdQcow.Image;

/// <summary>Block size constraints advertised with NBD_INFO_BLOCK_SIZE.</summary>
public readonly record struct BlockSizeHints(uint Minimum, uint Preferred, uint Maximum);
