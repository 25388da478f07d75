namespace NbdQcow.Protocol;

/// <summary>One extent of a BLOCK_STATUS reply (compact descriptors widened to 64 bits).</summary>
public readonly record struct NbdBlockDescriptor(ulong Length, ulong Flags);
