namespace NbdQcow.Image.Qcow2.Format;

/// <summary>Sizes derived from the header: clusters, subclusters, L2 and refcount table shapes.</summary>
public sealed class Qcow2Geometry
{
    public Qcow2Geometry(int clusterBits, bool extendedL2, int refcountOrder, long virtualSize)
    {
        if (clusterBits is < Qcow2Header.MinClusterBits or > Qcow2Header.MaxClusterBits)
            throw new ArgumentOutOfRangeException(nameof(clusterBits));
        if (refcountOrder is < 0 or > Qcow2Header.MaxRefcountOrder)
            throw new ArgumentOutOfRangeException(nameof(refcountOrder));
        ClusterBits = clusterBits;
        ExtendedL2 = extendedL2;
        RefcountOrder = refcountOrder;
        VirtualSize = virtualSize;
        L2EntrySize = extendedL2 ? 16 : 8;
        L2Bits = clusterBits - (extendedL2 ? 4 : 3);
        SubclusterBits = extendedL2 ? clusterBits - 5 : clusterBits;
        RefcountBlockBits = clusterBits + 3 - refcountOrder;
    }

    public static Qcow2Geometry FromHeader(Qcow2Header header) =>
        new(header.ClusterBits, header.HasExtendedL2, header.RefcountOrder, (long)Math.Min(header.Size, long.MaxValue));

    public int ClusterBits { get; }
    public int ClusterSize => 1 << ClusterBits;
    public long ClusterOffsetMask => ClusterSize - 1;
    public bool ExtendedL2 { get; }
    public int L2EntrySize { get; }
    /// <summary>log2 of the entries per L2 table.</summary>
    public int L2Bits { get; }
    public int L2Entries => 1 << L2Bits;
    /// <summary>Guest bytes one L2 table maps.</summary>
    public long L2Coverage => 1L << (L2Bits + ClusterBits);
    public int SubclusterBits { get; }
    public int SubclusterSize => 1 << SubclusterBits;
    public int SubclustersPerCluster => ExtendedL2 ? 32 : 1;
    public int RefcountOrder { get; }
    public int RefcountBits => 1 << RefcountOrder;
    /// <summary>log2 of refcount entries per refcount block.</summary>
    public int RefcountBlockBits { get; }
    public int RefcountBlockEntries => 1 << RefcountBlockBits;
    public long VirtualSize { get; }

    /// <summary>L1 entries needed to map <see cref="VirtualSize"/>.</summary>
    public long RequiredL1Entries => RequiredL1EntriesFor(VirtualSize);

    public long RequiredL1EntriesFor(long virtualSize) =>
        (long)(((ulong)virtualSize + (ulong)L2Coverage - 1) >> (L2Bits + ClusterBits));

    public long L1Index(long guestOffset) => guestOffset >> (L2Bits + ClusterBits);

    public int L2Index(long guestOffset) => (int)((guestOffset >> ClusterBits) & (L2Entries - 1));

    public int OffsetInCluster(long offset) => (int)(offset & ClusterOffsetMask);

    public int SubclusterIndex(long guestOffset) => (int)((guestOffset & ClusterOffsetMask) >> SubclusterBits);

    public long StartOfCluster(long offset) => offset & ~ClusterOffsetMask;

    /// <summary>Bytes from <paramref name="offset"/> to the end of its cluster.</summary>
    public int BytesToClusterEnd(long offset) => ClusterSize - OffsetInCluster(offset);

    /// <summary>Refcount table index and block index of a host cluster.</summary>
    public long RefcountTableIndex(long hostOffset) => hostOffset >> (ClusterBits + RefcountBlockBits);

    public int RefcountBlockIndex(long hostOffset) => (int)((hostOffset >> ClusterBits) & (RefcountBlockEntries - 1));
}
