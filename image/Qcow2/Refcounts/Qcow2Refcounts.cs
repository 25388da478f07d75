using System.Buffers.Binary;
using NbdQcow.Cache.Metadata;
using NbdQcow.HostIo;
using NbdQcow.Image.Qcow2.Format;

namespace NbdQcow.Image.Qcow2.Refcounts;

/// <summary>
/// The refcount table and refcount blocks (any width, refcount_order 0..6) and the cluster allocator:
/// finds free clusters (refcount 0), creates refcount blocks (placed inside the range they describe when
/// possible), grows and relocates the refcount table, grows the file, and frees clusters only once the
/// table change that dropped the last reference is durable. All methods run under the image's metadata lock.
/// </summary>
public sealed class Qcow2Refcounts
{
    private readonly IHostFile _file;
    private readonly MetadataTableCache _cache;
    private readonly Qcow2Geometry _geometry;
    private readonly Qcow2MetadataMap _map;
    private readonly Qcow2Header _header;
    private readonly List<Qcow2PendingFree> _pendingFrees = new();
    private readonly int _clusterBits;
    private readonly int _blockBits;
    private readonly int _order;
    /// <summary>Turns a description of damaged refcounts into the exception to throw (the image marks itself corrupt).</summary>
    private readonly Func<string, Exception> _damaged;

    private ulong[] _table;
    private long _tableOffset;
    private int _tableClusters;
    /// <summary>Lowest cluster index that may be free.</summary>
    private long _freeHint;
    /// <summary>Clusters at or past this index are unused (the end of the image).</summary>
    private long _endCluster;
    /// <summary>Sequence number of the next pending free.</summary>
    private long _nextFreeSequence;
    /// <summary>Bytes waiting in <see cref="_pendingFrees"/> (read without the lock to decide when to flush).</summary>
    private long _pendingFreeBytes;
    /// <summary>Clusters below <see cref="CountedEndClusterAtOpen"/> handed out since open (see <see cref="WasHandedOutSinceOpen"/>).</summary>
    private readonly Qcow2ClusterSet _handedOutSinceOpen = new();
    /// <summary>Free clusters a damaged entry names: never handed out, so that entry can never read new data.</summary>
    private readonly Qcow2ClusterSet _quarantined = new();

    public Qcow2Refcounts(IHostFile file, MetadataTableCache cache, Qcow2Header header, Qcow2MetadataMap map,
        Func<string, Exception>? damaged = null)
    {
        _damaged = damaged ?? (problem => new BlockDeviceException(BlockError.Io, problem));
        _file = file;
        _cache = cache;
        _header = header;
        _geometry = Qcow2Geometry.FromHeader(header);
        _map = map;
        _clusterBits = header.ClusterBits;
        _blockBits = _geometry.RefcountBlockBits;
        _order = header.RefcountOrder;
        _tableOffset = (long)header.RefcountTableOffset;
        _tableClusters = (int)header.RefcountTableClusters;
        int entries = _tableClusters * (_geometry.ClusterSize / 8);
        _table = BigEndianTable.Read(file, _tableOffset, entries);
        long fileLength = file.Length;
        _endCluster = (fileLength + _geometry.ClusterSize - 1) >> _clusterBits;
        map.Add(_tableOffset, (long)_tableClusters << _clusterBits);
        for (int i = 0; i < _table.Length; i++)
        {
            if (_table[i] == 0) continue;
            ulong offset = _table[i] & L1Entry.OffsetMask;
            if ((_table[i] & 0x1ffUL) != 0 || (offset & (ulong)_geometry.ClusterOffsetMask) != 0)
                throw new Qcow2FormatException($"refcount table entry {i}", $"0x{_table[i]:x}", "refcount block offset not aligned to a cluster or reserved bits set");
            if ((long)offset >= fileLength)
                throw new Qcow2FormatException($"refcount table entry {i}", (long)offset, "refcount block past the end of the file");
            _table[i] = offset;
            map.Add((long)offset, _geometry.ClusterSize);
            _endCluster = Math.Max(_endCluster, ((long)offset >> _clusterBits) + 1);
        }
        FileEndCluster = _endCluster;
        _endCluster = Math.Max(_endCluster, CountedEndPast(_endCluster));
        CountedEndClusterAtOpen = _endCluster;
        _freeHint = 0;
    }

    /// <summary>
    /// First cluster index past every cluster the refcounts count at or past <paramref name="from"/>. A file cut short
    /// (a copy that stopped, a truncation) keeps entries and refcounts for clusters it no longer has; the allocator
    /// treats everything past its end as free, so without this the first new cluster would be one an old entry names,
    /// and that guest offset would read the new write's data. Each distinct block is read once: bounded by the file.
    /// </summary>
    private long CountedEndPast(long from)
    {
        long end = from;
        int entries = 1 << _blockBits;
        var lastCounted = new Dictionary<long, int>();
        for (long t = from >> _blockBits; t < _table.Length; t++)
        {
            long block = (long)_table[t];
            if (block == 0) continue;
            if (!lastCounted.TryGetValue(block, out int last))
            {
                using var lease = _cache.Get(block);
                last = entries - 1;
                while (last >= 0 && RefcountBlockCodec.Get(lease.Data, last, _order) == 0) last--;
                lastCounted[block] = last;
            }
            if (last >= 0) end = Math.Max(end, (t << _blockBits) + last + 1);
        }
        return end;
    }

    public long TableOffset => _tableOffset;

    /// <summary>The refcount table as this object keeps it (block offsets, 0 for none), including changes not yet written.</summary>
    public ReadOnlySpan<ulong> BlockOffsets => _table;
    public int TableClusters => _tableClusters;
    public int PendingFreeCount => _pendingFrees.Count;
    /// <summary>Bytes whose reference drop waits for a durable flush; safe to read without the lock.</summary>
    public long PendingFreeBytes => Interlocked.Read(ref _pendingFreeBytes);
    /// <summary>
    /// Frees recorded before this mark are covered by a durable flush whose table writes start now (read it under
    /// the lock, in the same hold as the flush takes its dirty tables): once that flush's sync is done, pass the mark
    /// to <see cref="ApplyDurableFrees"/>. Without it a table changed again meanwhile (steady churn on one L2 table)
    /// would never look durable, and its freed clusters would never be reused.
    /// </summary>
    public long FreeSequenceMark => _nextFreeSequence;
    /// <summary>First cluster index past every allocation (the image's end).</summary>
    public long EndCluster => _endCluster;
    /// <summary>
    /// Clusters the file had at open (its length, and every refcount block). Clusters from here to the end the
    /// refcounts counted at open were cut off the file: not data anyone can read back, until written anew.
    /// </summary>
    public long FileEndCluster { get; }
    /// <summary>The end the refcounts counted at open (at least <see cref="FileEndCluster"/>); the allocator never hands out clusters between the two.</summary>
    public long CountedEndClusterAtOpen { get; }
    public int ClusterSize => _geometry.ClusterSize;
    public int ClusterBits => _clusterBits;

    /// <summary>Offset of the refcount block describing the cluster, or 0 when it has none.</summary>
    public long BlockOffsetFor(long clusterIndex)
    {
        long t = clusterIndex >> _blockBits;
        return t < _table.Length ? (long)_table[t] : 0;
    }

    public ulong GetRefcount(long hostOffset)
    {
        long cluster = hostOffset >> _clusterBits;
        long block = BlockOffsetFor(cluster);
        if (block == 0) return 0;
        using var lease = _cache.Get(block);
        return RefcountBlockCodec.Get(lease.Data, (int)(cluster & ((1L << _blockBits) - 1)), _order);
    }

    /// <summary>
    /// True when the allocator gave <paramref name="cluster"/> (below <see cref="CountedEndClusterAtOpen"/>) to new data or
    /// a new table since the image was opened. An entry of an L2 table first read after that, naming it, cannot be one
    /// this session wrote: it named a cluster that was free at open (damage), and now names another offset's data.
    /// </summary>
    public bool WasHandedOutSinceOpen(long cluster) => _handedOutSinceOpen.Contains(cluster);

    /// <summary>Keeps a free cluster a damaged entry names from ever being handed out (until the image is reopened).</summary>
    public void Quarantine(long cluster) => _quarantined.Add(cluster);

    /// <summary>
    /// Allocates <paramref name="count"/> contiguous free clusters, sets their refcount to 1 and returns the host
    /// offset of the first. The caller must make its reference depend on <see cref="AddReferenceDependencies"/>.
    /// </summary>
    public long Allocate(int count)
    {
        if (count < 1) throw new ArgumentOutOfRangeException(nameof(count));
        // Each pass that does not return created a refcount block or grew the table, which a run needs at most a
        // few of; damaged refcounts must not turn this into an endless loop under the metadata lock.
        for (int pass = 0; ; pass++)
        {
            if (pass > MaxAllocationPasses)
                throw _damaged($"qcow2: allocating {count} cluster(s) made no progress after {pass} passes: the refcounts are damaged; {RepairAdvice}");
            long start = FindFreeRun(count, _freeHint);
            // Bounded: each step moves past one quarantined cluster.
            for (long hit; (hit = _quarantined.LastIn(start, count)) >= 0;)
                start = FindFreeRun(count, hit + 1);
            // A free run that holds metadata: the refcounts lost track of it (a zeroed refcount table or block).
            // Handing it out would put guest data or a new table over the header, an L1/L2 table or a refcount block.
            if (_map.Overlaps(start << _clusterBits, (long)count << _clusterBits))
                throw _damaged($"qcow2: the refcounts count metadata near host offset 0x{start << _clusterBits:x} as free: the refcount table or a refcount block is damaged; {RepairAdvice}");
            // Make sure every cluster of the run has a refcount block; creating one may take a cluster of the
            // run (blocks are placed inside their own range), so look again when anything was created.
            bool created = false;
            for (long t = start >> _blockBits; t <= (start + count - 1) >> _blockBits; t++)
                created |= EnsureBlock(t);
            if (created) continue;
            for (long c = start; c < start + count; c++)
            {
                ChangeRefcount(c, +1);
                if (c < CountedEndClusterAtOpen) _handedOutSinceOpen.Add(c);
            }
            _endCluster = Math.Max(_endCluster, start + count);
            _freeHint = start + count;
            return start << _clusterBits;
        }
    }

    private const int MaxAllocationPasses = 64;
    private const string RepairAdvice = "repair it with: nbdqcow check --repair all";

    /// <summary>Adds <paramref name="delta"/> to the refcount of every cluster touched by the byte range.</summary>
    public void Change(long hostOffset, long length, int delta)
    {
        long first = hostOffset >> _clusterBits;
        long last = (hostOffset + Math.Max(length, 1) - 1) >> _clusterBits;
        for (long c = first; c <= last; c++)
        {
            if (delta > 0) EnsureBlock(c >> _blockBits);
            ChangeRefcount(c, delta);
        }
    }

    /// <summary>
    /// Makes <paramref name="dependent"/> (the table that will reference the cluster at <paramref name="hostOffset"/>)
    /// wait until the cluster's refcount is durable: its refcount block and the refcount table cluster pointing to it.
    /// </summary>
    public void AddReferenceDependencies(long hostOffset, MetadataTable dependent)
    {
        long cluster = hostOffset >> _clusterBits;
        long t = cluster >> _blockBits;
        using (var block = _cache.Get((long)_table[t]))
            _cache.AddDependency(block.Table, dependent);
        using var chunk = _cache.Get(TableChunkOffset(t));
        _cache.AddDependency(chunk.Table, dependent);
    }

    /// <summary>
    /// Drops a reference to [hostOffset, hostOffset+length) once <paramref name="referencingTable"/> (the table that
    /// no longer points there) is durable; until then the clusters keep their refcount and are not reused.
    /// </summary>
    public void FreeWhenDurable(long hostOffset, long length, MetadataTable referencingTable)
    {
        _pendingFrees.Add(new Qcow2PendingFree(hostOffset, length, referencingTable, _nextFreeSequence++));
        Interlocked.Add(ref _pendingFreeBytes, length);
    }

    /// <summary>
    /// Applies the pending frees whose referencing table is now durable (call after a flush to disk): those recorded
    /// before <paramref name="coveredBefore"/> (a <see cref="FreeSequenceMark"/> taken when that flush started) and
    /// any whose table is durable as it stands. Freed data clusters are punched out of the host file. A free the
    /// refcounts cannot take (damaged metadata: the count is already 0) is dropped and reported, so one bad entry
    /// does not fail every later flush. Returns how many were applied.
    /// </summary>
    public int ApplyDurableFrees(long coveredBefore = 0)
    {
        int applied = 0, kept = 0, i = 0;
        string? failure = null;
        try
        {
            for (; i < _pendingFrees.Count; i++)
            {
                var pending = _pendingFrees[i];
                if (pending.Sequence >= coveredBefore && !_cache.IsDurable(pending.ReferencingTable))
                {
                    _pendingFrees[kept++] = pending;
                    continue;
                }
                Interlocked.Add(ref _pendingFreeBytes, -pending.Length);
                try
                {
                    Change(pending.HostOffset, pending.Length, -1);
                    applied++;
                }
                catch (BlockDeviceException e)
                {
                    failure ??= $"{e.Message}; the reference drop of host range 0x{pending.HostOffset:x}+{pending.Length} was skipped; {RepairAdvice}";
                }
            }
        }
        finally
        {
            // A visited free leaves the queue even when its drop failed half-way (a host I/O error): it must leak,
            // never be applied twice (a second drop could free a cluster reallocated in between, which would then
            // be handed out while still referenced). Frees not visited yet stay queued.
            for (int j = Math.Min(i + 1, _pendingFrees.Count); j < _pendingFrees.Count; j++) _pendingFrees[kept++] = _pendingFrees[j];
            _pendingFrees.RemoveRange(kept, _pendingFrees.Count - kept);
        }
        if (failure is not null) _ = _damaged(failure); // reported (image marked corrupt); the flush itself succeeded
        return applied;
    }

    /// <summary>Offset of a refcount block whose own refcount is 0 (damaged refcounts), or null.</summary>
    public long? FindUncountedBlock()
    {
        foreach (ulong block in _table)
            if (block != 0 && GetRefcount((long)block) == 0) return (long)block;
        return null;
    }

    /// <summary>First cluster index past the last cluster with a non-zero refcount (the used part of the file).</summary>
    public long UsedEndCluster()
    {
        long c = _endCluster - 1;
        while (c >= 0)
        {
            long block = BlockOffsetFor(c);
            if (block == 0)
            {
                c = ((c >> _blockBits) << _blockBits) - 1; // no block: its whole range is free
                continue;
            }
            using var lease = _cache.Get(block);
            long rangeStart = (c >> _blockBits) << _blockBits;
            for (; c >= rangeStart; c--)
                if (RefcountBlockCodec.Get(lease.Data, (int)(c & ((1L << _blockBits) - 1)), _order) != 0)
                    return c + 1;
        }
        return 0;
    }

    /// <summary>Finds <paramref name="count"/> consecutive clusters with refcount 0 at or after <paramref name="from"/>.</summary>
    private long FindFreeRun(int count, long from)
    {
        long runStart = from, c = from;
        while (c < _endCluster)
        {
            if (c >= FileEndCluster && c < CountedEndClusterAtOpen)
            {
                // Cut off the file: old entries may still name these clusters, whatever their refcounts say now.
                runStart = c = CountedEndClusterAtOpen;
                continue;
            }
            long t = c >> _blockBits;
            long blockEnd = Math.Min((t + 1) << _blockBits, _endCluster);
            if (c < FileEndCluster) blockEnd = Math.Min(blockEnd, FileEndCluster);
            long block = t < _table.Length ? (long)_table[t] : 0;
            if (block == 0)
            {
                // No block: every cluster of its range is free.
                if (blockEnd - runStart >= count) return runStart;
                c = blockEnd;
                continue;
            }
            using var lease = _cache.Get(block);
            var data = lease.Data;
            for (; c < blockEnd; c++)
            {
                if (RefcountBlockCodec.Get(data, (int)(c & ((1L << _blockBits) - 1)), _order) != 0)
                {
                    runStart = c + 1;
                    continue;
                }
                if (c - runStart + 1 >= count) return runStart;
            }
        }
        return runStart; // the run continues past the end of the image
    }

    /// <summary>Creates the refcount block for range <paramref name="t"/> if missing; true when it created one.</summary>
    private bool EnsureBlock(long t)
    {
        if (t >= _table.Length)
        {
            GrowTable(t + 1);
            return true;
        }
        if (_table[t] != 0) return false;
        // Place the block on the first cluster of the range it describes: with no block, all of them are free.
        long blockCluster = t << _blockBits;
        long blockOffset = blockCluster << _clusterBits;
        // Offset 0 means "no block" in the table, and a range whose first cluster is metadata is not all free.
        if (_map.IsMetadata(blockOffset))
            throw _damaged($"qcow2: no refcount block describes host offset 0x{blockOffset:x}, which holds metadata: the refcount table is damaged; {RepairAdvice}");
        // Not on a cluster a damaged entry names (that entry would then name a refcount block): the next free one.
        long rangeEnd = (t + 1) << _blockBits;
        while (_quarantined.Contains(blockCluster))
        {
            if (++blockCluster == rangeEnd)
                throw _damaged($"qcow2: every cluster of the range at host offset 0x{(t << _blockBits) << _clusterBits:x} is named by a damaged entry; {RepairAdvice}");
        }
        blockOffset = blockCluster << _clusterBits;
        if (_map.IsMetadata(blockOffset))
            throw _damaged($"qcow2: no refcount block describes host offset 0x{blockOffset:x}, which holds metadata: the refcount table is damaged; {RepairAdvice}");
        using var block = _cache.GetNew(blockOffset);
        RefcountBlockCodec.Set(block.Data, (int)(blockCluster - (t << _blockBits)), _order, 1);
        if (blockCluster < CountedEndClusterAtOpen) _handedOutSinceOpen.Add(blockCluster);
        _map.Add(blockOffset, _geometry.ClusterSize);
        _endCluster = Math.Max(_endCluster, blockCluster + 1);
        SetTableEntry(t, (ulong)blockOffset, block.Table);
        return true;
    }

    private void ChangeRefcount(long cluster, int delta)
    {
        long block = BlockOffsetFor(cluster);
        if (block == 0)
            throw new BlockDeviceException(BlockError.Io, $"qcow2: no refcount block for cluster at 0x{cluster << _clusterBits:x}");
        using var lease = _cache.Get(block);
        int index = (int)(cluster & ((1L << _blockBits) - 1));
        ulong value = RefcountBlockCodec.Get(lease.Data, index, _order);
        ulong updated;
        if (delta >= 0)
        {
            if (value > RefcountBlockCodec.MaxValue(_order) - (ulong)delta)
                throw new BlockDeviceException(BlockError.NoSpace, $"qcow2: refcount of cluster at 0x{cluster << _clusterBits:x} would exceed {RefcountBlockCodec.MaxValue(_order)} ({1 << _order}-bit refcounts)");
            updated = value + (ulong)delta;
        }
        else
        {
            if (value < (ulong)-delta)
                throw new BlockDeviceException(BlockError.Io, $"qcow2: refcount of cluster at 0x{cluster << _clusterBits:x} would drop below zero (metadata corrupt)");
            updated = value - (ulong)-delta;
        }
        RefcountBlockCodec.Set(lease.Data, index, _order, updated);
        _cache.MarkDirty(lease.Table);
        if (updated == 0)
        {
            long offset = cluster << _clusterBits;
            if (_map.IsMetadata(offset))
            {
                _map.Remove(offset, _geometry.ClusterSize);
                _cache.Discard(offset);
            }
            else
            {
                try
                {
                    _file.TryPunchHole(offset, _geometry.ClusterSize);
                }
                catch (IOException)
                {
                    // Returning the space is a hint; the refcount drop above has happened and must stand.
                }
            }
            _freeHint = Math.Min(_freeHint, cluster);
        }
    }

    private long TableChunkOffset(long t) => _tableOffset + ((t * 8) >> _clusterBits << _clusterBits);

    private void SetTableEntry(long t, ulong value, MetadataTable block)
    {
        _table[t] = value;
        using var chunk = _cache.Get(TableChunkOffset(t));
        _cache.AddDependency(block, chunk.Table);
        BigEndianTable.Set(chunk.Data, (int)(t & ((_geometry.ClusterSize / 8) - 1)), value);
        _cache.MarkDirty(chunk.Table);
    }

    /// <summary>
    /// Moves the refcount table to a larger one at the end of the image, with new refcount blocks for the area
    /// it occupies: new blocks and table durable -> header points to the new table -> barrier -> old table freed.
    /// </summary>
    private void GrowTable(long requiredEntries)
    {
        int entriesPerCluster = _geometry.ClusterSize / 8;
        long newEntries = Math.Max(requiredEntries, (long)_table.Length * 2);
        long areaStart = _endCluster;
        long blocks = 0;
        long tableClusters;
        var uncovered = new List<long>();
        for (int pass = 0; ; pass++)
        {
            // Each pass adds room for blocks the previous one found missing; it settles within a few passes.
            if (pass > MaxAllocationPasses)
                throw _damaged($"qcow2: growing the refcount table to {newEntries} entries did not settle: the refcounts are damaged; {RepairAdvice}");
            tableClusters = (newEntries + entriesPerCluster - 1) / entriesPerCluster;
            long areaEnd = areaStart + blocks + tableClusters;
            long lastRange = (areaEnd - 1) >> _blockBits;
            if (lastRange >= newEntries) { newEntries = lastRange + 1; continue; }
            uncovered.Clear();
            for (long t = areaStart >> _blockBits; t <= lastRange; t++)
                if (t >= _table.Length || _table[t] == 0) uncovered.Add(t);
            if (uncovered.Count == blocks)
            {
                // The area must not take a cluster a damaged entry names: start again just past it.
                long hit = _quarantined.LastIn(areaStart, areaEnd - areaStart);
                if (hit < 0) break;
                areaStart = hit + 1;
                continue;
            }
            blocks = uncovered.Count;
        }
        if (tableClusters * _geometry.ClusterSize > Qcow2HeaderValidator.MaxRefcountTableBytes)
            throw new BlockDeviceException(BlockError.NoSpace, $"qcow2: refcount table would exceed {Qcow2HeaderValidator.MaxRefcountTableBytes} bytes");

        var newTable = new ulong[tableClusters * entriesPerCluster];
        _table.CopyTo(newTable, 0);
        long next = areaStart;
        foreach (long t in uncovered)
        {
            long offset = next++ << _clusterBits;
            newTable[t] = (ulong)offset;
            using var block = _cache.GetNew(offset);
            _map.Add(offset, _geometry.ClusterSize);
        }
        long newTableOffset = next << _clusterBits;
        long areaEndCluster = next + tableClusters;
        for (long c = areaStart; c < areaEndCluster; c++)
        {
            using var block = _cache.Get((long)newTable[c >> _blockBits]);
            int index = (int)(c & ((1L << _blockBits) - 1));
            RefcountBlockCodec.Set(block.Data, index, _order, RefcountBlockCodec.Get(block.Data, index, _order) + 1);
            _cache.MarkDirty(block.Table);
        }
        for (long i = 0; i < tableClusters; i++)
        {
            using var chunk = _cache.GetNew(newTableOffset + (i << _clusterBits));
            BigEndianTable.Encode(newTable.AsSpan((int)(i * entriesPerCluster), entriesPerCluster), chunk.Data);
        }
        _map.Add(newTableOffset, tableClusters << _clusterBits);
        _endCluster = areaEndCluster;

        // New blocks, new table and everything they describe durable before the header points at them.
        _cache.FlushToDisk();
        Span<byte> field = stackalloc byte[12];
        BinaryPrimitives.WriteUInt64BigEndian(field, (ulong)newTableOffset);
        BinaryPrimitives.WriteUInt32BigEndian(field[8..], (uint)tableClusters);
        _file.Write(48, field); // refcount_table_offset and refcount_table_clusters, one sector
        _cache.Barrier();

        long oldOffset = _tableOffset;
        int oldClusters = _tableClusters;
        _table = newTable;
        _tableOffset = newTableOffset;
        _tableClusters = (int)tableClusters;
        _header.RefcountTableOffset = (ulong)newTableOffset;
        _header.RefcountTableClusters = (uint)tableClusters;
        for (int i = 0; i < oldClusters; i++)
            _cache.Discard(oldOffset + ((long)i << _clusterBits));
        // The header no longer points at the old table (durable): it can be freed at once.
        Change(oldOffset, (long)oldClusters << _clusterBits, -1);
    }
}
