using NbdQcow.Cache;
using NbdQcow.HostIo;

namespace NbdQcow.Config;

/// <summary>One validated export.</summary>
public sealed record ExportSettings
{
    public required string Name { get; init; }
    public required string Path { get; init; }
    public string? Description { get; init; }
    public CacheMode CacheMode { get; init; } = CacheMode.Writeback;
    /// <summary>Host I/O engine of the data path as asked, or null for the cache mode's default (<see cref="EffectiveAio"/>).</summary>
    public AioEngine? Aio { get; init; }
    /// <summary>The engine the export uses: <see cref="Aio"/>, else the cache mode's default.</summary>
    public AioEngine EffectiveAio => Aio ?? CacheMode.DefaultAio();
    public bool ReadOnly { get; init; }
    /// <summary>Null when off.</summary>
    public TimeSpan? MaxDirtyAge { get; init; } = TimeSpan.FromMilliseconds(1000);
    public bool Journal { get; init; }
    public string? Snapshot { get; init; }
    /// <summary>"raw", "qcow2", or null to probe.</summary>
    public string? Format { get; init; }
    /// <summary>qemu-compatible image locks: on by default; off or force-share (read-only) when asked.</summary>
    public ImageLocking Locking { get; init; } = ImageLocking.On;
    /// <summary>Start inactive: image closed, no write lock, until activated through the control socket.</summary>
    public bool Inactive { get; init; }
    /// <summary>Size to create the image with when missing, or null.</summary>
    public long? CreateSize { get; init; }
    /// <summary>Persistent dirty bitmaps offered as qemu:dirty-bitmap:NAME (incremental backup).</summary>
    public IReadOnlyList<string> Bitmaps { get; init; } = [];
    public WriteErrorPolicy WriteErrorPolicy { get; init; } = WriteErrorPolicy.Report;
    public ReadErrorPolicy ReadErrorPolicy { get; init; } = ReadErrorPolicy.Report;
    /// <summary>How long a held request is retried before its error goes to the client.</summary>
    public TimeSpan ErrorRetryTimeout { get; init; } = DefaultErrorRetryTimeout;

    public static readonly TimeSpan DefaultErrorRetryTimeout = TimeSpan.FromSeconds(60);
    /// <summary>Full path of the folder backing files must lie in, or null for the folder of the image itself.</summary>
    public string? BackingRoot { get; init; }
    /// <summary>Full path of the file holding the secret of an encrypted image, or null (then NBDQCOW_KEY, if set).</summary>
    public string? KeyFile { get; init; }
}
