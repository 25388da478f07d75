namespace NbdQcow.Image.Qcow2.Format;

/// <summary>
/// One L2 entry: the 64-bit descriptor plus, with extended L2, the 64-bit subcluster bitmap
/// (bits 0-31 allocated, bits 32-63 reads-as-zero). Decoding needs the image geometry and whether
/// an external data file is used (host offset 0 is then valid when COPIED is set).
/// </summary>
public readonly record struct L2Entry(ulong Raw, ulong Bitmap = 0)
{
    public const ulong OffsetMask = 0x00ff_ffff_ffff_fe00UL;
    public const ulong CopiedFlag = 1UL << 63;
    public const ulong CompressedFlag = 1UL << 62;
    public const ulong ZeroFlag = 1UL;
    /// <summary>Reserved bits of a standard (uncompressed) entry: 1-8 and 56-61.</summary>
    public const ulong StandardReservedMask = 0x3f00_0000_0000_01feUL;
    public const ulong AllAllocatedMask = 0xffff_ffffUL;

    public bool IsCompressed => (Raw & CompressedFlag) != 0;
    public bool IsCopied => (Raw & CopiedFlag) != 0;
    /// <summary>Host cluster offset of a standard entry (0 when none).</summary>
    public long HostOffset => (long)(Raw & OffsetMask);
    public bool HasZeroFlag => (Raw & ZeroFlag) != 0;
    public uint AllocatedSubclusters => (uint)Bitmap;
    public uint ZeroSubclusters => (uint)(Bitmap >> 32);

    /// <summary>Whether the entry points at a host cluster (data or preallocated zero), i.e. owns a refcount.</summary>
    public bool HasHostCluster(bool externalDataFile) =>
        !IsCompressed && (HostOffset != 0 || (externalDataFile && IsCopied));

    /// <summary>The storage kind of subcluster <paramref name="subcluster"/> (always 0 without extended L2).</summary>
    public Qcow2ClusterKind Classify(int subcluster, bool extendedL2, bool externalDataFile)
    {
        if (IsCompressed)
            return Qcow2ClusterKind.Compressed;
        bool hasHost = HasHostCluster(externalDataFile);
        if (!extendedL2)
        {
            if (HasZeroFlag)
                return hasHost ? Qcow2ClusterKind.ZeroWithHostCluster : Qcow2ClusterKind.Zero;
            return hasHost ? Qcow2ClusterKind.Normal : Qcow2ClusterKind.Unallocated;
        }
        uint allocated = AllocatedSubclusters;
        uint zero = ZeroSubclusters;
        uint bit = 1u << subcluster;
        if (hasHost)
        {
            if ((allocated & zero) != 0)
                return Qcow2ClusterKind.Invalid;
            if ((zero & bit) != 0)
                return Qcow2ClusterKind.ZeroWithHostCluster;
            return (allocated & bit) != 0 ? Qcow2ClusterKind.Normal : Qcow2ClusterKind.UnallocatedWithHostCluster;
        }
        if (allocated != 0)
            return Qcow2ClusterKind.Invalid;
        return (zero & bit) != 0 ? Qcow2ClusterKind.Zero : Qcow2ClusterKind.Unallocated;
    }

    public CompressedClusterDescriptor Compressed(int clusterBits) => CompressedClusterDescriptor.Decode(Raw, clusterBits);

    /// <summary>Describes what is wrong with this entry, or null when it is well formed.</summary>
    public string? Problem(Qcow2Geometry geometry, bool externalDataFile)
    {
        if (IsCompressed)
        {
            if (IsCopied)
                return "compressed entry with the COPIED flag";
            if (geometry.ExtendedL2 && Bitmap != 0)
                return "compressed entry with a non-zero subcluster bitmap";
            if (externalDataFile)
                return "compressed cluster in an image with an external data file";
            return null;
        }
        if ((Raw & StandardReservedMask) != 0)
            return "reserved bits set";
        if ((HostOffset & geometry.ClusterOffsetMask) != 0)
            return $"host offset 0x{HostOffset:x} not aligned to a cluster";
        if (geometry.ExtendedL2)
        {
            if (HasZeroFlag)
                return "zero flag (bit 0) set in an extended L2 entry";
            if ((AllocatedSubclusters & ZeroSubclusters) != 0)
                return "subcluster both allocated and zero";
            if (!HasHostCluster(externalDataFile) && AllocatedSubclusters != 0)
                return "allocated subclusters without a host cluster";
        }
        return null;
    }

    /// <summary>A standard entry for a host cluster (COPIED when its refcount is 1).</summary>
    public static L2Entry Standard(long hostOffset, bool copied, ulong bitmap = 0) =>
        new(((ulong)hostOffset & OffsetMask) | (copied ? CopiedFlag : 0), bitmap);
}
