namespace NbdQcow.Tests.Crash.States;

/// <summary>
/// One on-disk state a power loss at a crash point could leave: the durable base plus the volatile calls marked
/// in <see cref="Included"/> (indexes into <see cref="CrashPoint.Volatile"/>, applied in issue order); the call at
/// <see cref="TornIndex"/>, if any, reached disk only in the 4 KiB blocks marked in <see cref="TornBlocks"/>.
/// </summary>
public sealed record CrashState(string Description, bool[] Included, int TornIndex = -1, bool[]? TornBlocks = null);
