using NbdQcow.Cache;

namespace NbdQcow.Tests.Crash.Oracle;

/// <summary>A cache mode with its max dirty age (null = off).</summary>
public sealed record CrashModeConfig(CacheMode Mode, TimeSpan? MaxDirtyAge)
{
    public string Name => Mode.ToCliName() + (MaxDirtyAge is null && Mode.HasVolatileCache() ? " (age off)" : "");

    /// <summary>Unsafe without max dirty age promises nothing after a power loss.</summary>
    public bool PromisesNothingOnPowerLoss => Mode == CacheMode.Unsafe && MaxDirtyAge is null;

    public override string ToString() => Name;

    public static readonly TimeSpan DefaultMaxDirtyAge = TimeSpan.FromMilliseconds(1000);

    public static IReadOnlyList<CrashModeConfig> All =>
    [
        new(CacheMode.Writeback, DefaultMaxDirtyAge),
        new(CacheMode.Writethrough, DefaultMaxDirtyAge),
        new(CacheMode.None, DefaultMaxDirtyAge),
        new(CacheMode.DirectSync, DefaultMaxDirtyAge),
        new(CacheMode.Unsafe, DefaultMaxDirtyAge),
        new(CacheMode.Writeback, null),
        new(CacheMode.Unsafe, null),
    ];
}
