using NbdQcow.HostIo;

namespace NbdQcow.Image.Qcow2.Recover;

/// <summary>What `nbdqcow recover` was asked to do.</summary>
public sealed record RecoveryOptions
{
    public required string OutputPath { get; init; }
    public RecoveryOutputFormat Format { get; init; } = RecoveryOutputFormat.Qcow2;
    /// <summary>Replace an existing output file (and its lost+found folder). The input image is never replaced.</summary>
    public bool Force { get; init; }
    /// <summary>Recover this internal snapshot's view (name or id) instead of the active one.</summary>
    public string? Snapshot { get; init; }
    /// <summary>
    /// Fill L1 slots of the recovered view that have no usable L2 table from the newest snapshot that maps them.
    /// Off by default: the snapshot's data is older than what the guest last saw there.
    /// </summary>
    public bool FillFromSnapshots { get; init; }
    /// <summary>qcow2 output only: keep the damaged image's backing file as the output's backing file.</summary>
    public bool KeepBacking { get; init; }
    /// <summary>Metadata history (journal) to apply and to use as placement evidence; empty = none.</summary>
    public IReadOnlyList<IRecoveryHistorySource> History { get; init; } = [];
    public IProgress<RecoveryProgress>? Progress { get; init; }
    /// <summary>
    /// Image locks as qemu takes them: a reader's lock on the damaged image (ForceShare: read even while a writer has
    /// it) and a writer's lock on the output, including an existing output that --force replaces. Off in the library.
    /// </summary>
    public ImageLocking Locking { get; init; } = ImageLocking.Off;
    /// <summary>Cluster size to use instead of the header's cluster_bits (a power of two, 512 B to 2 MiB); null = header, or probed when garbage.</summary>
    public int? ClusterSize { get; init; }
    /// <summary>Active L1 table offset to use instead of the header's.</summary>
    public long? L1Offset { get; init; }
    /// <summary>Refcount table offset to use instead of the header's.</summary>
    public long? RefcountOffset { get; init; }
    /// <summary>The secret of a LUKS-encrypted image: its data is decrypted and the recovered image written unencrypted.</summary>
    public byte[]? EncryptionKey { get; init; }
}
