using NbdQcow.HostIo.IoUring;

namespace NbdQcow.HostIo;

/// <summary>
/// Groups the host I/O of one burst of requests into one submission. A session opens the batch when it sees more
/// requests already received and closes it before it waits for anything; meanwhile an engine that batches
/// (io_uring) holds the submissions of every thread serving the export and enters them together when the last
/// open batch closes. The threads engine ignores it: its calls are done when they return.
/// Whoever opens a batch must close it without waiting for host I/O first, or the I/O it holds never starts.
/// </summary>
public sealed class HostIoBatch
{
    private readonly object _lock = new();
    private readonly List<IoUringOperation> _held = new(64);
    private IoUringOperation[] _submitting = new IoUringOperation[64];
    private int _openCount;

    /// <summary>Starts holding submissions (batches nest and may overlap across sessions).</summary>
    public void Open() => Interlocked.Increment(ref _openCount);

    /// <summary>Ends one <see cref="Open"/>; the last one submits everything held.</summary>
    public void Close()
    {
        if (Interlocked.Decrement(ref _openCount) == 0) SubmitHeld();
    }

    /// <summary>True while some batch is open (submissions are being held).</summary>
    public bool IsOpen => Volatile.Read(ref _openCount) > 0;

    /// <summary>How many submissions are held now (for tests).</summary>
    public int HeldCount
    {
        get
        {
            lock (_lock) return _held.Count;
        }
    }

    /// <summary>Holds <paramref name="operation"/> while a batch is open; false when none is (submit it at once).</summary>
    internal bool TryDefer(IoUringOperation operation)
    {
        lock (_lock)
        {
            if (Volatile.Read(ref _openCount) == 0) return false;
            _held.Add(operation);
            return true;
        }
    }

    private void SubmitHeld()
    {
        int count;
        IoUringOperation[] batch;
        lock (_lock)
        {
            count = _held.Count;
            if (count == 0) return;
            if (_submitting.Length < count) _submitting = new IoUringOperation[Math.Max(count, _submitting.Length * 2)];
            batch = _submitting;
            _held.CopyTo(batch);
            _held.Clear();
            // Entered under the lock: a later batch's entries cannot overtake these or reuse the array meanwhile.
            var start = 0;
            while (start < count)
            {
                var ring = batch[start].Ring;
                var end = start + 1;
                while (end < count && ReferenceEquals(batch[end].Ring, ring)) end++;
                ring.SubmitNow(batch.AsSpan(start, end - start));
                start = end;
            }
            Array.Clear(batch, 0, count);
        }
    }
}
