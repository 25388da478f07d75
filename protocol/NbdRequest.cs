namespace NbdQcow.Protocol;

/// <summary>One transmission request header (compact or extended; length widened to 64 bits).</summary>
public readonly record struct NbdRequest(NbdCommandFlags Flags, NbdCommand Command, ulong Cookie, ulong Offset, ulong Length);
