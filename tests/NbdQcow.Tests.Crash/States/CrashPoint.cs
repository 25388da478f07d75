using NbdQcow.Tests.Crash.Recording;

namespace NbdQcow.Tests.Crash.States;

/// <summary>
/// A power loss after tick <see cref="Tick"/>: <see cref="Durable"/> are the calls completed before the last
/// barrier (of their file) that completed by then was issued; <see cref="Volatile"/> are the other calls issued
/// by then (completed or still in flight), each of which may or may not have reached disk.
/// </summary>
public sealed record CrashPoint(long Tick, IReadOnlyList<HostFileEvent> Durable, IReadOnlyList<HostFileEvent> Volatile, IReadOnlyList<CrashState> States);
