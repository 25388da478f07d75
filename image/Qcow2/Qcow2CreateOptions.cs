namespace NbdQcow.Image.Qcow2;

/// <summary>What <see cref="Qcow2Creator"/> makes: a qcow2 v3 image.</summary>
public sealed record Qcow2CreateOptions
{
    /// <summary>Virtual size in bytes (rounded up to 512); null takes the backing file's size.</summary>
    public long? Size { get; init; }
    public int ClusterSize { get; init; } = 65536;
    /// <summary>Backing file name as stored in the image (relative names resolve against the image's folder).</summary>
    public string? BackingFile { get; init; }
    /// <summary>"qcow2" or "raw"; null probes the backing file (qcow2 magic, else raw).</summary>
    public string? BackingFormat { get; init; }
    /// <summary>Extended L2 entries (32 subclusters per cluster; clusters of at least 16 KiB).</summary>
    public bool ExtendedL2 { get; init; }
    /// <summary>refcount_order: refcounts of 2^order bits (0..6).</summary>
    public int RefcountOrder { get; init; } = 4;
    /// <summary>Encrypt with LUKS (aes-xts-plain64, sha256), keyslot 0 opened by this secret; null: not encrypted.</summary>
    public byte[]? EncryptionSecret { get; init; }
    /// <summary>PBKDF2 time the keyslot's iteration count is calibrated to (qemu's encrypt.iter-time, 2 s by default).</summary>
    public TimeSpan EncryptionIterTime { get; init; } = TimeSpan.FromMilliseconds(2000);
}
