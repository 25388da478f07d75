namespace NbdQcow.Soak;

/// <summary>
/// What each 4 KiB block of the disk may hold. Per block: the durable content (known to survive a crash:
/// flushed, or read back after a restart) and the history of operations sent since, each acknowledged or not.
/// A block whose writes were not flushed may after a crash hold the durable content or any later write, never
/// anything else; in normal running (and after a clean stop) it holds the latest acknowledged content, or what a
/// write that was never acknowledged (its connection killed) put there. Trim leaves zero or the content before.
/// Operations on a block never overlap: <see cref="TryReserve"/> hands each block to one request at a time.
/// </summary>
public sealed class ContentModel
{
    private readonly Lock _lock = new();
    private readonly long[] _durable;
    private readonly List<Operation>?[] _history;
    private readonly bool[] _busy;
    private readonly HashSet<int> _dirty = [];
    private long _nextTag;
    private long _ackCounter;

    public ContentModel(int blocks)
    {
        _durable = new long[blocks];
        _history = new List<Operation>?[blocks];
        _busy = new bool[blocks];
    }

    public int Blocks => _durable.Length;

    /// <summary>Blocks with operations since their durable content (the ones a restart check must read).</summary>
    public int[] DirtyBlocks() { lock (_lock) return [.. _dirty]; }

    public bool TryReserve(int first, int count)
    {
        lock (_lock)
        {
            for (int b = first; b < first + count; b++)
                if (_busy[b]) return false;
            for (int b = first; b < first + count; b++) _busy[b] = true;
            return true;
        }
    }

    public void Release(int first, int count)
    {
        lock (_lock)
            for (int b = first; b < first + count; b++) _busy[b] = false;
    }

    /// <summary>Records a write (tag &gt; 0), zero (tag 0) or trim about to be sent; returns the operation to acknowledge later.</summary>
    public Operation BeginWrite(int first, int count, OperationKind kind)
    {
        lock (_lock)
        {
            long tag = kind == OperationKind.Write ? ++_nextTag : 0;
            var op = new Operation(kind, tag, first, count);
            for (int b = first; b < first + count; b++)
            {
                (_history[b] ??= []).Add(op);
                _dirty.Add(b);
            }
            return op;
        }
    }

    public void Acknowledge(Operation op)
    {
        lock (_lock) op.AckSequence = ++_ackCounter;
    }

    /// <summary>A FLUSH about to be sent covers every operation acknowledged before this mark.</summary>
    public long FlushMark() { lock (_lock) return _ackCounter; }

    /// <summary>The FLUSH sent at <paramref name="mark"/> was acknowledged: what it covered is durable.</summary>
    public void FlushCompleted(long mark)
    {
        lock (_lock)
        {
            List<int>? clean = null;
            foreach (int b in _dirty)
            {
                var history = _history[b]!;
                int latest = -1;
                for (int i = 0; i < history.Count; i++)
                {
                    long ack = history[i].AckSequence;
                    if (ack != 0 && ack <= mark && (latest < 0 || ack > history[latest].AckSequence)) latest = i;
                }
                // A trim leaves either zero or the old content: nothing becomes certain through it.
                if (latest < 0 || history[latest].Kind == OperationKind.Trim) continue;
                var settled = history[latest];
                _durable[b] = settled.Tag;
                history.RemoveAll(o => o.AckSequence != 0 && o.AckSequence <= settled.AckSequence);
                if (history.Count == 0)
                {
                    _history[b] = null;
                    (clean ??= []).Add(b);
                }
            }
            if (clean is not null) foreach (int b in clean) _dirty.Remove(b);
        }
    }

    /// <summary>Contents block <paramref name="b"/> may hold after a crash (durable content or any later operation).</summary>
    public HashSet<long> AfterCrash(int b)
    {
        lock (_lock)
        {
            var allowed = new HashSet<long> { _durable[b] };
            if (_history[b] is { } history)
                foreach (var op in history) allowed.Add(op.Tag);
            return allowed;
        }
    }

    /// <summary>Contents block <paramref name="b"/> may hold while running or after a clean stop.</summary>
    public HashSet<long> Current(int b)
    {
        lock (_lock)
        {
            var allowed = new HashSet<long>();
            var acked = new List<Operation>();
            if (_history[b] is { } history)
                foreach (var op in history)
                {
                    if (op.AckSequence == 0) allowed.Add(op.Tag);
                    else acked.Add(op);
                }
            acked.Sort((x, y) => x.AckSequence.CompareTo(y.AckSequence));
            // Walk back from the latest acknowledged operation: a trim adds zero and lets the one before show through.
            int i = acked.Count - 1;
            for (; i >= 0; i--)
            {
                allowed.Add(acked[i].Tag);
                if (acked[i].Kind != OperationKind.Trim) break;
            }
            if (i < 0) allowed.Add(_durable[b]);
            return allowed;
        }
    }

    /// <summary>After a restart the content read back is what the disk holds now: it becomes durable, history is dropped.</summary>
    public void Settle(int b, long tag)
    {
        lock (_lock)
        {
            _durable[b] = tag;
            _history[b] = null;
            _dirty.Remove(b);
        }
    }
}
