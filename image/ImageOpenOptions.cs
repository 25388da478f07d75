using NbdQcow.Cache;
using NbdQcow.HostIo;

namespace NbdQcow.Image;

/// <summary>How an export's image is opened.</summary>
public sealed record ImageOpenOptions
{
    public CacheMode CacheMode { get; init; } = CacheMode.Writeback;
    public bool ReadOnly { get; init; }
    /// <summary>Max age of an unflushed change before the server flushes on its own; null = off.</summary>
    public TimeSpan? MaxDirtyAge { get; init; } = TimeSpan.FromMilliseconds(1000);
    /// <summary>qcow2 metadata journal (IMAGE.journal): durable flushes commit dirty tables there; refused for raw images and unsafe mode.</summary>
    public bool Journal { get; init; }
    /// <summary>Journal bytes that trigger a checkpoint; null = default (32 MiB). Tests use small values.</summary>
    public long? JournalCheckpointBytes { get; init; }
    /// <summary>Internal snapshot to serve read-only (qcow2), or null.</summary>
    public string? Snapshot { get; init; }
    /// <summary>Force a format ("raw", "qcow2"); null probes.</summary>
    public string? Format { get; init; }
    /// <summary>Host file opener; tests substitute recording or fault-injecting files.</summary>
    public HostFileFactory? HostFileFactory { get; init; }
    /// <summary>Clock for time-based policies (max dirty age); tests pass a fake one. Null = system clock.</summary>
    public TimeProvider? TimeProvider { get; init; }
    /// <summary>Called with errors of background work (a max-dirty-age flush that failed); null = ignored.</summary>
    public Action<Exception>? BackgroundError { get; init; }
    /// <summary>Called with one line when the image finds damage while serving (it fails that request with EIO); null = ignored.</summary>
    public Action<string>? DamageReport { get; init; }
    /// <summary>Called after each durable flush of a writable image with its duration (metrics); null = ignored.</summary>
    public Action<TimeSpan>? FlushCompleted { get; init; }
    /// <summary>
    /// qemu-compatible image locks on the image file, its external data file and backing files (see ImageLock).
    /// Off by default for library users and tests; the CLI turns it on.
    /// </summary>
    public ImageLocking Locking { get; init; } = ImageLocking.Off;
    /// <summary>
    /// Folder that every file a qcow2 image names (backing files down the chain, an external data file) must lie in,
    /// or under, after symlinks are resolved; "/" allows any. Null: the folder that holds the opened image itself
    /// (after symlinks), so an image cannot make the server read host files it was not put next to.
    /// </summary>
    public string? BackingRoot { get; init; }
    /// <summary>Bytes of qcow2 metadata tables (L2, refcount blocks) kept in memory; null = default (covers 64 GiB at 64 KiB clusters).</summary>
    public long? MetadataCacheBytes { get; init; }
    /// <summary>The secret that opens a LUKS-encrypted qcow2 image (qemu's secret object: the bytes as given), or null.</summary>
    public byte[]? EncryptionKey { get; init; }
    /// <summary>Open an encrypted image read-only without its key: metadata only (info), data reads fail.</summary>
    public bool OpenEncryptedWithoutKey { get; init; }

    /// <summary>The cache-mode layer of a writable image, with this export's mode, max dirty age, clock and callbacks.</summary>
    internal CacheModeLayer CreateCacheModeLayer(ICacheModeTarget target) =>
        new(target, CacheMode, MaxDirtyAge, TimeProvider, BackgroundError, FlushCompleted);
}
