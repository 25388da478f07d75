using System.Buffers;
using System.Diagnostics;
using NbdQcow.Cache.Journal;
using NbdQcow.HostIo;

namespace NbdQcow.Cache.Metadata;

/// <summary>
/// Bounded cache of fixed-size metadata tables of one host file, keyed by file offset, with ordered
/// write-back. Knows nothing of qcow2 field layouts; the format code says what must be durable before what:
/// <list type="bullet">
/// <item><see cref="MarkDirtyAfterEarlierWrites"/>: every host write completed so far (data clusters, tables
/// written before) must be durable before this table reaches the file (data before the L2 entry that maps it).</item>
/// <item><see cref="AddDependency"/>: table A's current content must be durable before table B is written
/// (refcount block before the L2 table pointing into its range, L2 before L1, and the reverse for freeing).</item>
/// </list>
/// A flush writes tables in dependency order with a barrier (fdatasync) only where an order must hold, and
/// coalesces adjacent tables into one write. Evicting a dirty table follows the same order. Flushing to the OS
/// (<see cref="FlushToOs"/>) writes every dirty table without any barrier: it survives a crash of the process, not
/// of the host. Thread-safe: every method takes an internal lock; table contents are changed by callers under
/// their own (image) metadata lock while the table is pinned.
/// <para>Journal mode (<see cref="AttachJournal"/>): tables reach the disk through the <see cref="JournalTableWriter"/>
/// instead of the ordered chain (commit to the journal, then in place); the ordered flushes refuse, evictions and
/// discards go through the writer, and <see cref="FlushToDisk"/> (everything in place and durable) is its
/// checkpoint.</para>
/// </summary>
public sealed class MetadataTableCache : IDisposable
{
    /// <summary>Default capacity: the L2 tables (8 MiB) and 16-bit refcount blocks (2 MiB) of a 64 GiB image
    /// with 64 KiB clusters, with room to spare.</summary>
    public const long DefaultCapacityBytes = 16L << 20;

    /// <summary>A flush writes at most this many bytes per host write call when coalescing adjacent tables.</summary>
    private const int MaxCoalescedBytes = 4 << 20;

    private readonly IHostFile _file;
    private readonly Lock _lock = new();
    private readonly Dictionary<long, MetadataTable> _tables = new();
    private readonly LinkedList<MetadataTable> _lru = new();
    private readonly HashSet<MetadataTable> _dirty = new();
    private readonly int _capacityTables;

    /// <summary>Writes issued now belong to this epoch; a barrier makes every write of epochs up to it durable.</summary>
    private long _epoch;
    private long _durableEpoch = -1;
    /// <summary>True when the file may hold writes not yet covered by a barrier.</summary>
    private bool _unsyncedWrites;
    private bool _disposed;

    private JournalTableWriter? _journalWriter;

    public MetadataTableCache(IHostFile file, int tableSize, long capacityBytes = DefaultCapacityBytes)
    {
        ArgumentNullException.ThrowIfNull(file);
        if (tableSize < 512 || (tableSize & (tableSize - 1)) != 0)
            throw new ArgumentOutOfRangeException(nameof(tableSize), tableSize, "table size must be a power of two >= 512");
        _file = file;
        TableSize = tableSize;
        // At least a few tables so one operation can pin everything it needs (L2, refcount block, new tables).
        _capacityTables = (int)Math.Clamp(capacityBytes / tableSize, 16, int.MaxValue);
    }

    public IHostFile File => _file;

    public int TableSize { get; }

    /// <summary>Maximum number of cached tables (pinned tables may exceed it briefly).</summary>
    public int CapacityTables => _capacityTables;

    /// <summary>When false, evicting a dirty table writes it without barriers (unsafe cache mode).</summary>
    public bool EvictionUsesBarriers { get; set; } = true;

    public MetadataFlushStatistics Statistics { get; } = new();

    /// <summary>The journal mode's writer, or null (ordered flushing in place).</summary>
    public JournalTableWriter? JournalWriter => _journalWriter;

    /// <summary>Switches to journal mode: from now on tables reach the disk through the returned writer. Call before any table is dirty.</summary>
    public JournalTableWriter AttachJournal(MetadataJournal journal)
    {
        ArgumentNullException.ThrowIfNull(journal);
        lock (_lock)
        {
            if (_dirty.Count > 0) throw new InvalidOperationException("attach the journal before tables are changed");
            return _journalWriter = new JournalTableWriter(this, journal);
        }
    }

    /// <summary>The cache's lock, which the journal writer shares.</summary>
    internal Lock SyncRoot => _lock;

    public int CachedCount { get { lock (_lock) return _tables.Count; } }

    public int DirtyCount { get { lock (_lock) return _dirty.Count; } }

    /// <summary>Stopwatch timestamp when the oldest dirty table became dirty, or null when none is dirty.</summary>
    public long? OldestDirtyTimestamp
    {
        get
        {
            lock (_lock)
            {
                long? oldest = null;
                foreach (var table in _dirty)
                    if (oldest is null || table.DirtySinceTimestamp < oldest) oldest = table.DirtySinceTimestamp;
                return oldest;
            }
        }
    }

    /// <summary>Returns the table at <paramref name="offset"/>, loading it from the file if needed, pinned.</summary>
    public MetadataTableLease Get(long offset)
    {
        CheckOffset(offset);
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_tables.TryGetValue(offset, out var table))
            {
                Touch(table);
                table.PinCount++;
                return new MetadataTableLease(this, table);
            }
            MakeRoomLocked();
            var data = new byte[TableSize];
            _file.Read(offset, data);
            Statistics.TablesLoaded++;
            table = AddLocked(offset, data);
            // The content read may come from a write (an eviction) not yet covered by a barrier: until the next
            // barrier, treat it as written in the current epoch so tables depending on it wait for a barrier.
            table.WrittenEpoch = _unsyncedWrites ? _epoch : _durableEpoch;
            table.PinCount++;
            return new MetadataTableLease(this, table);
        }
    }

    /// <summary>
    /// Returns a zero-filled table for a freshly allocated cluster at <paramref name="offset"/> without reading
    /// the file, pinned and dirty (its zeroes must reach the file even if the caller writes nothing into it).
    /// </summary>
    public MetadataTableLease GetNew(long offset)
    {
        CheckOffset(offset);
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_tables.TryGetValue(offset, out var table))
            {
                table.Data.Clear();
                Touch(table);
            }
            else
            {
                MakeRoomLocked();
                table = AddLocked(offset, new byte[TableSize]);
            }
            table.PinCount++;
            MarkDirtyLocked(table);
            return new MetadataTableLease(this, table);
        }
    }

    /// <summary>Returns the cached table at <paramref name="offset"/> pinned, or false when it is not cached.</summary>
    public bool TryGetCached(long offset, out MetadataTableLease lease)
    {
        lock (_lock)
        {
            if (!_disposed && _tables.TryGetValue(offset, out var table))
            {
                Touch(table);
                table.PinCount++;
                lease = new MetadataTableLease(this, table);
                return true;
            }
        }
        lease = default;
        return false;
    }

    /// <summary>Marks a pinned table changed; it is written at the next flush or when evicted.</summary>
    public void MarkDirty(MetadataTable table)
    {
        lock (_lock) MarkDirtyLocked(table);
    }

    /// <summary>
    /// Marks a table changed and requires that every host write completed before this call (for example the
    /// data cluster the table now maps) is durable before the table is written: a barrier precedes its write.
    /// </summary>
    public void MarkDirtyAfterEarlierWrites(MetadataTable table)
    {
        lock (_lock)
        {
            MarkDirtyLocked(table);
            _unsyncedWrites = true;
            table.RequiredDurableEpoch = Math.Max(table.RequiredDurableEpoch, _epoch);
        }
    }

    /// <summary>
    /// Records that <paramref name="before"/>'s current content must be durable before <paramref name="after"/> is
    /// written; changes made to <paramref name="before"/> later, until it is written, are covered too. Call it
    /// before changing <paramref name="after"/>: if the new order would contradict an existing one (a cycle),
    /// <paramref name="before"/> is first flushed to disk (with what it depends on) to break the cycle.
    /// </summary>
    public void AddDependency(MetadataTable before, MetadataTable after)
    {
        ArgumentNullException.ThrowIfNull(before);
        ArgumentNullException.ThrowIfNull(after);
        if (ReferenceEquals(before, after)) return;
        lock (_lock)
        {
            // A journal commit makes every dirty table durable at once: no order between tables to keep.
            if (_journalWriter is not null) return;
            if (DependsOnLocked(before, after, new HashSet<MetadataTable>()))
            {
                // Break the cycle: make "before" (and "after", which it waits for) durable now.
                FlushTablesLocked([before], withBarriers: true);
                BarrierLocked();
            }
            after.DependsOn ??= new List<MetadataTable>(2);
            if (!after.DependsOn.Contains(before)) after.DependsOn.Add(before);
        }
    }

    /// <summary>True when the table's content is on disk: not dirty and its last write covered by a barrier.</summary>
    public bool IsDurable(MetadataTable table)
    {
        // Journal mode: a table that is not dirty is in a durable commit (or in place, unchanged since one).
        lock (_lock) return !table.IsDirty && (_journalWriter is not null || table.WrittenEpoch <= _durableEpoch);
    }

    /// <summary>Records that the caller wrote to the host file (data), so the next barrier must really sync.</summary>
    public void NoteHostWrite()
    {
        lock (_lock) _unsyncedWrites = true;
    }

    /// <summary>A barrier: fdatasync of the host file (skipped when nothing was written since the last one).</summary>
    public void Barrier()
    {
        lock (_lock) BarrierLocked();
    }

    /// <summary>
    /// Flush to disk: writes every dirty table in dependency order, with barriers only where an order must hold,
    /// and ends with an fdatasync, so every write completed before the call (tables and data) is durable and in
    /// place. In journal mode that is the writer's checkpoint.
    /// </summary>
    public void FlushToDisk()
    {
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_journalWriter is not null)
            {
                _journalWriter.CheckpointLocked();
                return;
            }
            if (_dirty.Count > 0) FlushTablesLocked([.. _dirty], withBarriers: true);
            _unsyncedWrites = true; // callers' data writes may not have been noted: always sync here
            BarrierLocked();
        }
    }

    /// <summary>
    /// First half of a flush to disk that does not hold the cache's lock across the final fdatasync: writes every
    /// dirty table in dependency order (with the barriers the order needs) and returns the epoch that the final
    /// sync must cover. Pass it to <see cref="SyncEpoch"/>. Lookups (every in-place data write) then proceed while
    /// the file syncs; tables dirtied meanwhile belong to the next epoch and stay dirty. Not in journal mode
    /// (<see cref="FlushDurable"/> commits there).
    /// </summary>
    public long WriteTablesForDisk()
    {
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_journalWriter is not null) throw new InvalidOperationException("journal mode flushes through its JournalTableWriter");
            if (_dirty.Count > 0) FlushTablesLocked([.. _dirty], withBarriers: true);
            long epoch = _epoch;
            _epoch++;
            // Callers' data writes may not have been noted: the sync always happens; later writes set this again.
            _unsyncedWrites = false;
            return epoch;
        }
    }

    /// <summary>Second half: fdatasync (without the lock), then every write of <paramref name="epoch"/> and before is durable.</summary>
    public void SyncEpoch(long epoch)
    {
        _file.Flush();
        NoteEpochDurable(epoch);
    }

    /// <summary>
    /// <see cref="SyncEpoch"/> through the file's asynchronous barrier (a ring FSYNC with io_uring: no thread waits
    /// in fdatasync). The barrier is submitted now, so it covers every write completed before the call.
    /// </summary>
    public ValueTask SyncEpochAsync(long epoch)
    {
        var syncing = _file.FlushAsync();
        if (!syncing.IsCompletedSuccessfully) return AwaitSyncEpochAsync(syncing, epoch);
        syncing.GetAwaiter().GetResult();
        NoteEpochDurable(epoch);
        return ValueTask.CompletedTask;
    }

    [System.Runtime.CompilerServices.AsyncMethodBuilder(typeof(System.Runtime.CompilerServices.PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask AwaitSyncEpochAsync(ValueTask syncing, long epoch)
    {
        await syncing.ConfigureAwait(false);
        NoteEpochDurable(epoch);
    }

    private void NoteEpochDurable(long epoch)
    {
        lock (_lock)
        {
            Statistics.Barriers++;
            if (epoch > _durableEpoch) _durableEpoch = epoch;
        }
    }

    /// <summary>
    /// Flush to the OS: writes every dirty table (in dependency order) without any barrier. The image then
    /// survives a crash of this process (the page cache keeps the writes), not a crash of the host.
    /// </summary>
    public void FlushToOs()
    {
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_journalWriter is not null) throw new InvalidOperationException("journal mode never writes uncommitted tables to the OS");
            if (_dirty.Count > 0) FlushTablesLocked([.. _dirty], withBarriers: false);
        }
    }

    /// <summary>
    /// Flush to the OS of what is already safe: writes only the dirty tables whose prerequisites (earlier writes
    /// required by <see cref="MarkDirtyAfterEarlierWrites"/>, tables given by <see cref="AddDependency"/>) are
    /// durable, and never issues a barrier. Under the crash model (writes after the last fdatasync may each land
    /// or not) any subset of these writes leaves a consistent image, so this is safe against a host crash, unlike
    /// <see cref="FlushToOs"/>. Returns the number of dirty tables left because they must wait for a barrier.
    /// </summary>
    public int FlushSafeToOs()
    {
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_journalWriter is not null) throw new InvalidOperationException("journal mode never writes uncommitted tables to the OS");
            if (_dirty.Count == 0) return 0;
            // One pass suffices: a table whose prerequisite is written now still waits for that write's barrier.
            var ready = new List<MetadataTable>();
            foreach (var table in _dirty)
            {
                PruneDependencies(table);
                if (!HasDirtyDependency(table) && !NeedsBarrier(table)) ready.Add(table);
            }
            if (ready.Count > 0) WriteCoalescedLocked(ready);
            return _dirty.Count;
        }
    }

    /// <summary>Writes one table (and, first, what it depends on) with ordering barriers; no final sync.</summary>
    public void WriteBack(MetadataTable table)
    {
        lock (_lock)
        {
            if (_journalWriter is not null) throw new InvalidOperationException("journal mode writes tables in place only at a checkpoint");
            if (table.IsDirty) FlushTablesLocked([table], withBarriers: true);
        }
    }

    /// <summary>
    /// Drops the table at <paramref name="offset"/> from the cache without writing it (its cluster was freed,
    /// so its content no longer matters). A pinned table cannot be discarded.
    /// </summary>
    public void Discard(long offset)
    {
        lock (_lock)
        {
            _journalWriter?.NoteDiscardLocked(offset);
            if (!_tables.TryGetValue(offset, out var table)) return;
            if (table.PinCount > 0)
                throw new InvalidOperationException($"metadata table at 0x{offset:x} is pinned and cannot be discarded");
            RemoveLocked(table);
        }
    }

    /// <summary>Drops every clean unpinned table (for example after an inactivate); dirty ones stay.</summary>
    public void DropClean()
    {
        lock (_lock)
        {
            foreach (var table in _tables.Values.ToArray())
                if (!table.IsDirty && table.PinCount == 0) RemoveLocked(table);
        }
    }

    internal void Unpin(MetadataTable table)
    {
        lock (_lock)
        {
            if (table.PinCount <= 0) throw new InvalidOperationException("metadata table unpinned more often than pinned");
            table.PinCount--;
            if (table.PinCount == 0 && table.IsCached && _tables.Count > _capacityTables && !_disposed)
                MakeRoomLocked();
        }
    }

    public void Dispose()
    {
        lock (_lock)
        {
            _disposed = true;
            _tables.Clear();
            _lru.Clear();
            _dirty.Clear();
        }
    }

    private void CheckOffset(long offset)
    {
        if (offset < 0 || (offset & (TableSize - 1)) != 0)
            throw new ArgumentOutOfRangeException(nameof(offset), offset, $"metadata table offset must be a non-negative multiple of {TableSize}");
    }

    private MetadataTable AddLocked(long offset, byte[] data)
    {
        var table = new MetadataTable(offset, data);
        table.LruNode = _lru.AddLast(table);
        _tables.Add(offset, table);
        return table;
    }

    private void RemoveLocked(MetadataTable table)
    {
        _tables.Remove(table.Offset);
        if (table.LruNode is not null) _lru.Remove(table.LruNode);
        table.LruNode = null;
        table.IsCached = false;
        if (table.IsDirty)
        {
            table.IsDirty = false;
            _dirty.Remove(table);
        }
        table.DependsOn = null;
        _journalWriter?.Forget(table);
    }

    private void Touch(MetadataTable table)
    {
        if (table.LruNode is null) return;
        _lru.Remove(table.LruNode);
        _lru.AddLast(table.LruNode);
    }

    private void MarkDirtyLocked(MetadataTable table)
    {
        if (!table.IsCached) throw new InvalidOperationException($"metadata table at 0x{table.Offset:x} is no longer cached");
        if (table.PinCount <= 0) throw new InvalidOperationException($"metadata table at 0x{table.Offset:x} must be pinned to be changed");
        if (!table.IsDirty)
        {
            table.IsDirty = true;
            table.DirtySinceTimestamp = Stopwatch.GetTimestamp();
            _dirty.Add(table);
        }
    }

    /// <summary>Evicts least recently used unpinned tables until one more fits; clean ones first.</summary>
    private void MakeRoomLocked()
    {
        while (_tables.Count >= _capacityTables)
        {
            MetadataTable? clean = null, dirty = null;
            for (var node = _lru.First; node is not null; node = node.Next)
            {
                var candidate = node.Value;
                if (candidate.PinCount > 0) continue;
                if (!candidate.IsDirty) { clean = candidate; break; }
                dirty ??= candidate;
            }
            var victim = clean ?? dirty;
            if (victim is null) return; // everything pinned: grow past capacity until tables are released
            if (_journalWriter is not null) _journalWriter.WriteForEvictionLocked(victim);
            else if (victim.IsDirty) FlushTablesLocked([victim], withBarriers: EvictionUsesBarriers);
            if (victim.IsDirty) return; // could not be written (should not happen): keep it
            RemoveLocked(victim);
            Statistics.Evictions++;
        }
    }

    private bool DependsOnLocked(MetadataTable table, MetadataTable target, HashSet<MetadataTable> seen)
    {
        if (table.DependsOn is null || !seen.Add(table)) return false;
        foreach (var dep in table.DependsOn)
        {
            if (ReferenceEquals(dep, target)) return true;
            if (DependsOnLocked(dep, target, seen)) return true;
        }
        return false;
    }

    /// <summary>
    /// Writes <paramref name="roots"/> and every dirty table they (transitively) depend on. With barriers, a table
    /// is written only once what it depends on is durable: ready tables go out together (coalesced), then one
    /// barrier, then the tables that waited for them, and so on.
    /// </summary>
    private void FlushTablesLocked(IReadOnlyList<MetadataTable> roots, bool withBarriers)
    {
        var pending = new HashSet<MetadataTable>();
        var stack = new Stack<MetadataTable>(roots);
        while (stack.Count > 0)
        {
            var table = stack.Pop();
            if (!table.IsDirty || !pending.Add(table)) continue;
            if (table.DependsOn is null) continue;
            foreach (var dep in table.DependsOn)
                if (dep.IsDirty) stack.Push(dep);
        }

        var ready = new List<MetadataTable>();
        while (pending.Count > 0)
        {
            ready.Clear();
            var waitingForBarrier = false;
            foreach (var table in pending)
            {
                PruneDependencies(table);
                if (HasDirtyDependency(table)) continue;
                if (withBarriers && NeedsBarrier(table)) { waitingForBarrier = true; continue; }
                ready.Add(table);
            }
            if (ready.Count > 0)
            {
                WriteCoalescedLocked(ready);
                foreach (var table in ready) pending.Remove(table);
            }
            else if (waitingForBarrier)
            {
                _unsyncedWrites = true;
                BarrierLocked();
            }
            else
            {
                // Only a dependency cycle can get here (AddDependency prevents them): break it by writing the
                // lowest table, so a flush always terminates.
                var first = pending.MinBy(t => t.Offset)!;
                first.DependsOn = null;
            }
        }
    }

    private void PruneDependencies(MetadataTable table)
    {
        if (table.DependsOn is null) return;
        table.DependsOn.RemoveAll(dep => !dep.IsDirty && dep.WrittenEpoch <= _durableEpoch);
        if (table.DependsOn.Count == 0) table.DependsOn = null;
    }

    private static bool HasDirtyDependency(MetadataTable table)
    {
        if (table.DependsOn is null) return false;
        foreach (var dep in table.DependsOn)
            if (dep.IsDirty) return true;
        return false;
    }

    private bool NeedsBarrier(MetadataTable table)
    {
        if (table.RequiredDurableEpoch > _durableEpoch) return true;
        if (table.DependsOn is null) return false;
        foreach (var dep in table.DependsOn)
            if (dep.WrittenEpoch > _durableEpoch) return true;
        return false;
    }

    /// <summary>Throws once the cache is disposed; the caller holds the lock.</summary>
    internal void ThrowIfDisposedLocked() => ObjectDisposedException.ThrowIf(_disposed, this);

    /// <summary>A copy of the dirty tables; the caller holds the lock.</summary>
    internal List<MetadataTable> DirtyTablesLocked() => new(_dirty);

    /// <summary>The table's content is durable elsewhere (a journal commit): no longer dirty, nothing to wait for.</summary>
    internal void MarkCleanLocked(MetadataTable table)
    {
        table.IsDirty = false;
        table.RequiredDurableEpoch = -1;
        table.DependsOn = null;
        _dirty.Remove(table);
    }

    /// <summary>An fdatasync of the host file now, whatever was noted written (callers' data writes are not all noted).</summary>
    internal void SyncLocked()
    {
        _unsyncedWrites = true;
        BarrierLocked();
    }

    /// <summary>Writes the tables, adjacent ones coalesced into one host write; no barrier. The caller holds the lock.</summary>
    internal void WriteCoalescedLocked(List<MetadataTable> tables)
    {
        tables.Sort(static (a, b) => a.Offset.CompareTo(b.Offset));
        var maxRun = Math.Max(1, MaxCoalescedBytes / TableSize);
        var start = 0;
        while (start < tables.Count)
        {
            var end = start + 1;
            while (end < tables.Count && end - start < maxRun && tables[end].Offset == tables[end - 1].Offset + TableSize)
                end++;
            var count = end - start;
            if (count == 1)
            {
                _file.Write(tables[start].Offset, tables[start].Buffer);
            }
            else
            {
                var bytes = count * TableSize;
                var buffer = ArrayPool<byte>.Shared.Rent(bytes);
                try
                {
                    for (var i = 0; i < count; i++)
                        tables[start + i].Buffer.CopyTo(buffer.AsSpan(i * TableSize, TableSize));
                    _file.Write(tables[start].Offset, buffer.AsSpan(0, bytes));
                }
                finally
                {
                    ArrayPool<byte>.Shared.Return(buffer);
                }
            }
            Statistics.TableWriteCalls++;
            for (var i = start; i < end; i++)
            {
                var table = tables[i];
                table.IsDirty = false;
                table.WrittenEpoch = _epoch;
                table.RequiredDurableEpoch = -1;
                table.DependsOn = null;
                _dirty.Remove(table);
                Statistics.TablesWritten++;
            }
            _unsyncedWrites = true;
            start = end;
        }
    }

    private void BarrierLocked()
    {
        if (_unsyncedWrites)
        {
            _file.Flush();
            Statistics.Barriers++;
            _unsyncedWrites = false;
        }
        _durableEpoch = _epoch;
        _epoch++;
    }
}
