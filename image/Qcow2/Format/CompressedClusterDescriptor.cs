namespace NbdQcow.Image.Qcow2.Format;

/// <summary>
/// Decodes the compressed-cluster descriptor in an L2 entry. With x = 62 - (cluster_bits - 8): bits 0..x-1 are the
/// host byte offset (not aligned), bits x..61 the number of 512-byte sectors used beyond the first one.
/// </summary>
public readonly record struct CompressedClusterDescriptor(long HostOffset, int CompressedLength)
{
    public const int SectorSize = 512;

    public static int SizeShift(int clusterBits) => 62 - (clusterBits - 8);

    public static CompressedClusterDescriptor Decode(ulong l2Entry, int clusterBits)
    {
        int shift = SizeShift(clusterBits);
        ulong offsetMask = (1UL << shift) - 1;
        ulong sizeMask = (1UL << (clusterBits - 8)) - 1;
        long offset = (long)(l2Entry & offsetMask);
        long sectors = (long)((l2Entry >> shift) & sizeMask) + 1;
        int length = (int)(sectors * SectorSize - (offset & (SectorSize - 1)));
        return new CompressedClusterDescriptor(offset, length);
    }

    /// <summary>Encodes offset and length (the sectors touched by [offset, offset+length)) into L2 entry bits 0..61.</summary>
    public static ulong Encode(long hostOffset, int compressedLength, int clusterBits)
    {
        int shift = SizeShift(clusterBits);
        long lastSector = (hostOffset + compressedLength - 1) / SectorSize;
        long extraSectors = lastSector - hostOffset / SectorSize;
        ulong sizeMask = (1UL << (clusterBits - 8)) - 1;
        if ((ulong)extraSectors > sizeMask || hostOffset < 0 || (ulong)hostOffset >= 1UL << Math.Min(shift, 56))
            throw new ArgumentOutOfRangeException(nameof(compressedLength), "compressed cluster descriptor out of range");
        return (ulong)hostOffset | ((ulong)extraSectors << shift);
    }
}
