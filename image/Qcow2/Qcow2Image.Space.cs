using NbdQcow.Image.Qcow2.Format;

namespace NbdQcow.Image.Qcow2;

// Host space for metadata tables. Tables are written as whole clusters at flush time; on a sparse file a cluster
// only partly written so far (qemu-img writes the few bytes of a small L1 table or refcount block) or not at all
// (a new L2 table) is a hole, and on a full or thin file system filling it fails with ENOSPC at every flush: the
// mappings of writes already acknowledged could then never be written. So table clusters get their space up front.
public sealed partial class Qcow2Image
{
    /// <summary>
    /// Takes the host space of a new table cluster now (plain fallocate), while the write that needs it can still
    /// fail cleanly with ENOSPC. Otherwise the table waits for the next flush as a hole in a sparse file, and on a
    /// full or thin file system that flush, and every one after it, fails to write the mapping of writes already
    /// acknowledged. The content is left alone (no zeroing): the table is written whole at flush, in its place in
    /// the flush order, and zeroing in place would be a metadata write outside that order (with the journal, the
    /// in-place copy of the image may still name the cluster until the next checkpoint).
    /// </summary>
    private void ReserveTableCluster(long offset)
    {
        try
        {
            File.TryReserve(offset, Geometry.ClusterSize);
        }
        catch (IOException)
        {
            ReleaseUnlinkedCluster(offset);
            throw;
        }
    }

    /// <summary>
    /// At a read-write open: reserves (fallocate, content unchanged) the clusters of the L1 table, the refcount table
    /// and the refcount blocks. Best effort: where space is already short, the first flush reports it.
    /// </summary>
    private void ReserveTableSpace()
    {
        try
        {
            var g = Geometry;
            var refcounts = _refcounts!;
            if (Header.L1Size > 0) Reserve((long)Header.L1TableOffset, Header.L1Size * 8L);
            // The refcount table as the allocator keeps it, not a second read of the disk: one copy, so what is
            // reserved is what the allocator will write to, pending changes included.
            Reserve(refcounts.TableOffset, (long)refcounts.TableClusters << g.ClusterBits);
            foreach (ulong block in refcounts.BlockOffsets)
            {
                long offset = (long)(block & L1Entry.OffsetMask);
                if (offset != 0) Reserve(offset, g.ClusterSize);
            }
        }
        catch (IOException)
        {
            // Space is short already (or fallocate fails otherwise): the flush that needs it will say so.
        }

        void Reserve(long offset, long length)
        {
            long start = offset & ~Geometry.ClusterOffsetMask;
            long end = (offset + length + Geometry.ClusterSize - 1) & ~Geometry.ClusterOffsetMask;
            File.TryReserve(start, end - start);
        }
    }
}
