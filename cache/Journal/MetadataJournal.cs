using System.Buffers;
using NbdQcow.HostIo;

namespace NbdQcow.Cache.Journal;

/// <summary>
/// The write side of the metadata write-ahead journal: a sidecar file of transactions, each one flush's dirty table
/// images plus a commit trailer, appended and made durable with one fdatasync. <see cref="Reset"/> (after a
/// checkpoint wrote every table in place) starts a new generation; the transactions it retires are first copied
/// into the history archive, which keeps a bounded past for recovery. Not thread-safe: the metadata table cache
/// calls it under its lock.
/// </summary>
public sealed class MetadataJournal : IDisposable
{
    private readonly IHostFile _file;
    private readonly JournalHistoryArchive? _history;
    private readonly int _tableSize;
    private readonly TimeProvider _time;
    private readonly HashSet<long> _liveOffsets = new();
    private ulong _generation;
    private ulong _nextSequence;
    private long _appendOffset = JournalFormat.BlockSize;

    /// <param name="file">The journal file, opened read-write (created if missing).</param>
    /// <param name="tableSize">Size of every table image.</param>
    /// <param name="previous">What the file held before (its generation and sequence continue), or null.</param>
    /// <param name="history">Where retired transactions go, or null to keep none.</param>
    public MetadataJournal(IHostFile file, int tableSize, JournalReadResult? previous, JournalHistoryArchive? history,
        long checkpointBytes, TimeProvider? time = null)
    {
        _file = file;
        _tableSize = tableSize;
        _history = history;
        _time = time ?? TimeProvider.System;
        CheckpointBytes = checkpointBytes;
        _generation = previous?.Header?.Generation ?? 0;
        _nextSequence = previous?.NextSequence ?? 1;
        if (previous?.Header is not null)
        {
            // Continue after what the file holds: its committed transactions stay live until Reset or Start.
            _appendOffset = Math.Max(previous.EndOffset, JournalFormat.BlockSize);
            foreach (var transaction in previous.Transactions)
                foreach (var table in transaction.Tables) _liveOffsets.Add(table.Offset);
        }
    }

    public string Path => _file.Path;

    /// <summary>Called by the committer before the first commit of a generation, ahead of the image barrier that
    /// precedes the commit (the image marks itself as needing the journal; that barrier makes the mark durable).</summary>
    public Action? BeforeFirstCommit { get; set; }

    /// <summary>Called after a reset made the journal empty (the image may drop its mark).</summary>
    public Action? AfterReset { get; set; }

    /// <summary>Journal bytes past which the owner should checkpoint.</summary>
    public long CheckpointBytes { get; }

    public bool HasLiveRecords => _appendOffset > JournalFormat.BlockSize;

    public long LiveBytes => _appendOffset - JournalFormat.BlockSize;

    public ulong Generation => _generation;

    public ulong NextSequence => _nextSequence;

    public long Commits { get; private set; }

    /// <summary>True when a committed, not yet checkpointed transaction holds an image of the table at <paramref name="offset"/>.</summary>
    public bool IsLive(long offset) => _liveOffsets.Contains(offset);

    /// <summary>Starts a new, empty generation: header written (older records become stale), durable (file and folder).</summary>
    public void Start()
    {
        _generation++;
        WriteHeaderDurably();
        HostDirectory.SyncParentOf(_file.Path);
    }

    /// <summary>Appends one transaction with the given table images and makes it durable (one fdatasync).</summary>
    public void Commit(IReadOnlyList<long> offsets, IReadOnlyList<byte[]> images)
    {
        if (offsets.Count == 0) return;
        long padded = JournalFormat.PaddedLength(offsets.Count, _tableSize);
        if (padded > JournalFormat.MaxTransactionBytes)
            throw new InvalidOperationException($"journal transaction of {offsets.Count} tables exceeds {JournalFormat.MaxTransactionBytes} bytes");
        byte[] buffer = ArrayPool<byte>.Shared.Rent((int)padded);
        try
        {
            int length = JournalFormat.EncodeTransaction(buffer, _generation, _nextSequence, _time.GetUtcNow().ToUnixTimeMilliseconds(),
                _tableSize, offsets, images);
            _file.Write(_appendOffset, buffer.AsSpan(0, length));
            _file.Flush();
            _appendOffset += length;
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
        _nextSequence++;
        Commits++;
        foreach (long offset in offsets) _liveOffsets.Add(offset);
    }

    /// <summary>
    /// After a checkpoint made every committed table durable in place: copies the retired transactions to the
    /// history archive, then starts a new generation (durable before the next commit can reuse the space).
    /// </summary>
    public void Reset()
    {
        if (!HasLiveRecords) return;
        if (_history is not null)
        {
            try
            {
                _history.Append(_file, JournalFormat.BlockSize, LiveBytes, _tableSize);
            }
            catch (IOException)
            {
                // History is best effort: losing it must not stop the image from being checkpointed.
            }
        }
        _generation++;
        WriteHeaderDurably();
        _liveOffsets.Clear();
        AfterReset?.Invoke();
    }

    private void WriteHeaderDurably()
    {
        var block = new byte[JournalFormat.BlockSize];
        JournalFormat.WriteFileHeader(block, _tableSize, _generation, _nextSequence, _time.GetUtcNow().ToUnixTimeMilliseconds());
        _file.Write(0, block);
        // The file is not cut back: later appends then overwrite blocks the file system has already allocated,
        // so their fdatasync need not log a size change. Records left from older generations are rejected by
        // their generation number.
        _file.Flush();
        _appendOffset = JournalFormat.BlockSize;
    }

    public void Dispose()
    {
        _file.Dispose();
        _history?.Dispose();
    }
}
