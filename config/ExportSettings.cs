using NbdQcow.Cache;

namespace NbdQcow.Config;

/// <summary>One validated export.</summary>
public sealed record ExportSettings
{
    public required string Name { get; init; }
    public required string Path { get; init; }
    public string? Description { get; init; }
    public CacheMode CacheMode { get; init; } = CacheMode.Writeback;
    public bool ReadOnly { get; init; }
    /// <summary>Null when off.</summary>
    public TimeSpan? MaxDirtyAge { get; init; } = TimeSpan.FromMilliseconds(1000);
    public bool Journal { get; init; }
    public string? Snapshot { get; init; }
    /// <summary>"raw", "qcow2", or null to probe.</summary>
    public string? Format { get; init; }
    /// <summary>Size to create the image with when missing, or null.</summary>
    public long? CreateSize { get; init; }
}
