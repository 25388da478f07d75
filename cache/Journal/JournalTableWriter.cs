using NbdQcow.Cache.Metadata;

namespace NbdQcow.Cache.Journal;

/// <summary>
/// How a <see cref="MetadataTableCache"/> in journal mode gets its tables to disk: append, commit, then in place.
/// A durable flush (<see cref="Commit"/>) is one fdatasync of the host file (the data written before it), one journal
/// append of every dirty table image with its commit trailer and one fdatasync of the journal: the commit makes every
/// table durable at once, so dependencies and barriers between tables no longer matter. A table is written in place
/// only with content a durable commit already holds (at an eviction or a <see cref="Checkpoint"/>), so replaying the
/// journal after a crash is idempotent. Runs under the cache's lock: it shares the cache's tables.
/// </summary>
public sealed class JournalTableWriter
{
    private readonly MetadataTableCache _cache;
    /// <summary>Tables whose committed image is not yet in place (written at the next checkpoint).</summary>
    private readonly HashSet<MetadataTable> _notInPlace = new();
    /// <summary>A table with a live journal image was discarded (its cluster freed).</summary>
    private bool _discardedLive;

    internal JournalTableWriter(MetadataTableCache cache, MetadataJournal journal)
    {
        _cache = cache;
        Journal = journal;
    }

    public MetadataJournal Journal { get; }

    /// <summary>
    /// True when a freed table cluster still has an image in a live journal transaction. Replay would write that
    /// image over whatever reuses the cluster, so the owner must <see cref="Checkpoint"/> before the cluster can be
    /// allocated again.
    /// </summary>
    public bool NeedsCheckpointBeforeReuse { get { lock (_cache.SyncRoot) return _discardedLive; } }

    /// <summary>True while committed tables wait to be written in place (or the journal holds commits).</summary>
    public bool HasUncheckpointedTables { get { lock (_cache.SyncRoot) return _notInPlace.Count > 0 || Journal.HasLiveRecords; } }

    /// <summary>
    /// A durable flush: every write completed before the call (tables and data) is durable when it returns; past
    /// the journal's size bound, a checkpoint follows.
    /// </summary>
    public void Commit()
    {
        lock (_cache.SyncRoot)
        {
            _cache.ThrowIfDisposedLocked();
            CommitLocked();
            if (Journal.LiveBytes >= Journal.CheckpointBytes) CheckpointLocked();
        }
    }

    /// <summary>Commit what is dirty, write every committed table in place, fdatasync, then reset the journal.</summary>
    public void Checkpoint()
    {
        lock (_cache.SyncRoot)
        {
            _cache.ThrowIfDisposedLocked();
            CheckpointLocked();
        }
    }

    /// <summary>Host file barrier (data before the tables that map it), then every dirty table in one commit.</summary>
    private void CommitLocked()
    {
        var tables = _cache.DirtyTablesLocked();
        if (tables.Count > 0 && !Journal.HasLiveRecords) Journal.BeforeFirstCommit?.Invoke();
        _cache.SyncLocked(); // data writes are not all noted: always sync the host file here
        if (tables.Count == 0) return;
        tables.Sort(static (a, b) => a.Offset.CompareTo(b.Offset));
        var offsets = new long[tables.Count];
        var images = new byte[tables.Count][];
        for (int i = 0; i < tables.Count; i++)
        {
            offsets[i] = tables[i].Offset;
            images[i] = tables[i].Buffer;
        }
        Journal.Commit(offsets, images);
        foreach (var table in tables)
        {
            _cache.MarkCleanLocked(table);
            table.NotInPlace = true;
            _notInPlace.Add(table);
        }
    }

    /// <summary>A crash before the journal's reset is durable replays images equal to what is in place (idempotent).</summary>
    internal void CheckpointLocked()
    {
        CommitLocked();
        if (_notInPlace.Count > 0)
        {
            var tables = new List<MetadataTable>(_notInPlace);
            _cache.WriteCoalescedLocked(tables);
            foreach (var table in tables) table.NotInPlace = false;
            _notInPlace.Clear();
            _cache.SyncLocked();
        }
        Journal.Reset();
        _discardedLive = false;
    }

    /// <summary>Before the cache drops <paramref name="victim"/>: only committed content may reach its place, so commit first, then write it in place.</summary>
    internal void WriteForEvictionLocked(MetadataTable victim)
    {
        if (victim.IsDirty) CommitLocked();
        if (victim.NotInPlace)
        {
            _cache.WriteCoalescedLocked([victim]);
            Forget(victim);
        }
    }

    /// <summary>The table at <paramref name="offset"/> is being discarded (its cluster freed).</summary>
    internal void NoteDiscardLocked(long offset)
    {
        if (Journal.IsLive(offset)) _discardedLive = true;
    }

    /// <summary>The cache no longer holds <paramref name="table"/>.</summary>
    internal void Forget(MetadataTable table)
    {
        if (!table.NotInPlace) return;
        table.NotInPlace = false;
        _notInPlace.Remove(table);
    }
}
