namespace NbdQcow.Tests.Crash.Oracle;

/// <summary>After the clock reached <see cref="Time"/> (and a due background flush finished) the log stood at <see cref="Tick"/>.</summary>
public readonly record struct SettlePoint(long Tick, TimeSpan Time);
