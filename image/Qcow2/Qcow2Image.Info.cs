using NbdQcow.Image.Qcow2.Format;

namespace NbdQcow.Image.Qcow2;

// What `nbdqcow info` reports beyond the header: allocation of this layer.
public sealed partial class Qcow2Image
{
    /// <summary>Walks the mapping of this layer (bounded work: unallocated L2 ranges are skipped whole).</summary>
    public async ValueTask<Qcow2AllocationSummary> SummarizeAllocationAsync(CancellationToken cancellationToken = default)
    {
        long data = 0, compressed = 0, zero = 0, unallocated = 0, damaged = 0, l2Tables = 0;
        foreach (ulong raw in L1Table)
            if ((raw & L1Entry.OffsetMask) != 0)
                l2Tables++;
        long offset = 0;
        while (offset < Size)
        {
            cancellationToken.ThrowIfCancellationRequested();
            Qcow2Mapping mapping;
            try
            {
                mapping = await LookupAsync(offset, Size - offset, cancellationToken).ConfigureAwait(false);
            }
            catch (BlockDeviceException e) when (e.Error == BlockError.Io)
            {
                // A damaged mapping is counted, not fatal: the operator is looking at this image to find out what is left.
                var g = Geometry;
                long step = IsL1EntryDamaged(g.L1Index(offset)) ? g.L2Coverage - (offset & (g.L2Coverage - 1)) : g.ClusterSize - g.OffsetInCluster(offset);
                step = Math.Min(step, Size - offset);
                damaged += step;
                offset += step;
                continue;
            }
            switch (mapping.Kind)
            {
                case Qcow2ClusterKind.Normal: data += mapping.Length; break;
                case Qcow2ClusterKind.Compressed: compressed += mapping.Length; break;
                case Qcow2ClusterKind.Zero:
                case Qcow2ClusterKind.ZeroWithHostCluster: zero += mapping.Length; break;
                default: unallocated += mapping.Length; break;
            }
            offset += mapping.Length;
        }
        return new Qcow2AllocationSummary
        {
            DataBytes = data,
            CompressedBytes = compressed,
            ZeroBytes = zero,
            UnallocatedBytes = unallocated,
            DamagedBytes = damaged,
            L2Tables = l2Tables,
        };
    }
}
