using System.Runtime.CompilerServices;
using NbdQcow.HostIo;

namespace NbdQcow.Cache;

/// <summary>
/// The cache-mode table, once for every format: what a completed change needs before it is acknowledged
/// (writethrough and directsync: a durable flush; FUA: one where the mode honours flushes, the OS hand-over in unsafe;
/// otherwise it is noted as volatile), what a client FLUSH does (a durable flush in writeback and none, nothing where
/// every change is durable already, the OS hand-over in unsafe), and how durable flushes coalesce: one at a time, and
/// one that waited for another is done when that one covered every change completed before it was asked for, so a
/// burst of FLUSHes costs one fdatasync. Owns the max-dirty-age flusher (which runs the same coalesced flush) and the
/// unflushed-changes gauge. The format keeps its own order inside <see cref="ICacheModeTarget.FlushToDiskAsync"/>.
/// </summary>
public sealed class CacheModeLayer : IAsyncDisposable
{
    private readonly ICacheModeTarget _target;
    /// <summary>
    /// One durable flush at a time (<see cref="DurableFlushAsync"/>): <see cref="_flushRunning"/> while one runs, and the
    /// callers that came meanwhile gather in <see cref="_nextRound"/>, which runs when it ends.
    /// </summary>
    private readonly object _roundLock = new();
    private bool _flushRunning;
    private FlushRound? _nextRound;
    private readonly Stack<FlushRound> _freeRounds = new();
    private readonly Action<FlushRound> _recycleRound;
    private readonly Action _onRoundFlushed;
    private readonly RoundWorkItem _roundWorkItem;
    private FlushRound? _queuedRound;
    /// <summary>The running flush while it completes asynchronously (owned by it: one at a time).</summary>
    private (FlushRound? Round, ValueTask Flushing, long Covers, FlushTicket? Ticket, UnflushedChanges.FlushTicket Unflushed) _running;
    /// <summary>Changes completed so far, and how many of them the last durable flush covered.</summary>
    private long _completedChanges, _flushedChanges;

    /// <param name="target">The format's flush hooks.</param>
    /// <param name="mode">The export's cache mode.</param>
    /// <param name="maxDirtyAge">The max-dirty-age bound, or null for none; applies only to modes with a volatile cache.</param>
    /// <param name="timeProvider">Clock of the max-dirty-age flusher.</param>
    /// <param name="backgroundError">Where failures of background flushes go.</param>
    /// <param name="flushCompleted">Called after each durable flush with its duration (metrics).</param>
    public CacheModeLayer(ICacheModeTarget target, CacheMode mode, TimeSpan? maxDirtyAge, TimeProvider? timeProvider, Action<Exception>? backgroundError, Action<TimeSpan>? flushCompleted)
    {
        _target = target;
        Mode = mode;
        _recycleRound = RecycleRound;
        _onRoundFlushed = OnRoundFlushed;
        _roundWorkItem = new RoundWorkItem(this);
        if (mode.HasVolatileCache() && maxDirtyAge is { } maxAge)
            DirtyAge = new DirtyAgeFlusher(maxAge, DurableFlushAsync, timeProvider, backgroundError);
        Unflushed = new UnflushedChanges { FlushCompleted = flushCompleted };
    }

    public CacheMode Mode { get; }

    /// <summary>The max-dirty-age policy, or null when off or not applicable (no volatile cache).</summary>
    public DirtyAgeFlusher? DirtyAge { get; }

    /// <summary>What a power loss would cost now.</summary>
    public UnflushedChanges Unflushed { get; }

    /// <summary>True when a change with this FUA bit must be durable before it completes.</summary>
    public bool SyncsAfterChange(bool fua) => Mode.IsWriteThrough() || (fua && Mode.HonoursFlush());

    /// <summary>
    /// Call once a guest change (write, zero, trim) of <paramref name="length"/> bytes has completed on the host:
    /// makes it as durable as the mode and <paramref name="fua"/> ask before the change is acknowledged.
    /// Completes synchronously, without allocating, when nothing needs to wait.
    /// </summary>
    public ValueTask AfterChangeAsync(long length, bool fua, CancellationToken cancellationToken = default)
    {
        Interlocked.Increment(ref _completedChanges);
        if (SyncsAfterChange(fua)) return DurableFlushAsync();
        if (fua && Mode == CacheMode.Unsafe) return FlushToOsThenNoteAsync(length, cancellationToken);
        NoteVolatileChange(length);
        return ValueTask.CompletedTask;
    }

    /// <summary>A client FLUSH, per mode.</summary>
    public ValueTask FlushAsync(CancellationToken cancellationToken = default)
    {
        // After a failed fdatasync no flush is acknowledged again (unsafe promises nothing, so it keeps acknowledging).
        if (Mode != CacheMode.Unsafe && _target.SyncRefusal() is { } refusal) return ValueTask.FromException(refusal);
        if (Mode.IsWriteThrough()) return ValueTask.CompletedTask; // every change is durable before it completes
        if (Mode == CacheMode.Unsafe) return FlushToOsAsync(cancellationToken);
        return DurableFlushAsync();
    }

    /// <summary>
    /// Durable flush: every change completed before the call is durable afterwards. Flushes coalesce: one that waited
    /// for another to finish is done if that one already covered every change completed before it was asked for.
    /// </summary>
    public ValueTask DurableFlushAsync() => DurableFlushAsync(null);

    /// <param name="stillNeeded">Asked once this flush's turn comes: false skips it (another flush did what it was for).</param>
    public ValueTask DurableFlushAsync(Func<bool>? stillNeeded)
    {
        long target = Interlocked.Read(ref _completedChanges);
        bool covered = Interlocked.Read(ref _flushedChanges) >= target && !_target.HasUnflushedState;
        FlushRound round;
        ValueTask waiting;
        lock (_roundLock)
        {
            if (!_flushRunning && covered) return ValueTask.CompletedTask;
            round = _nextRound ??= RentRound();
            waiting = round.Join(target, stillNeeded);
            // A flush is running: it may have started before this caller's change completed, so the caller waits for
            // the next one, which starts when this one ends and covers everything completed by then.
            if (_flushRunning) return waiting;
            _flushRunning = true;
            _nextRound = null;
        }
        if (MustLeaveThisThread()) QueueRound(round);
        else RunRounds(round, fromCaller: true);
        return waiting;
    }

    /// <summary>
    /// A format's synchronous flush work (tables, barriers, frees) must not run on the thread that completes the
    /// export's other I/O (a write-through write's continuation gets here on it): every completion would wait behind
    /// it. A flush that only awaits the file's asynchronous fdatasync (the ring's FSYNC) stays: no hop.
    /// </summary>
    private bool MustLeaveThisThread() => IoCompletionThread.IsCurrent && _target.FlushBlocksThread;

    /// <summary>
    /// Runs <paramref name="round"/> and, while each completes synchronously, the rounds that queued meanwhile. A caller
    /// (<paramref name="fromCaller"/>) runs only its own round here, so its request is not held up by later ones.
    /// </summary>
    private void RunRounds(FlushRound round, bool fromCaller)
    {
        while (StartRound(round))
        {
            if (TakeNextRound() is not { } next) return;
            if (fromCaller || MustLeaveThisThread())
            {
                QueueRound(next);
                return;
            }
            round = next;
        }
    }

    /// <summary>Starts the round's flush; true when it finished synchronously (its waiters are completed).</summary>
    private bool StartRound(FlushRound round)
    {
        bool needed;
        try
        {
            needed = round.IsNeeded() && (Interlocked.Read(ref _flushedChanges) < round.Target || _target.HasUnflushedState);
        }
        catch (Exception e)
        {
            round.Complete(e);
            return true;
        }
        if (!needed)
        {
            round.Complete(null);
            return true;
        }
        long covers = Interlocked.Read(ref _completedChanges);
        var ticket = DirtyAge?.BeginFlush();
        var unflushed = Unflushed.BeginFlush();
        ValueTask flushing;
        try
        {
            flushing = _target.FlushToDiskAsync();
        }
        catch (Exception e)
        {
            round.Complete(e);
            return true;
        }
        if (flushing.IsCompleted)
        {
            FinishRound(round, flushing, covers, ticket, unflushed);
            return true;
        }
        _running = (round, flushing, covers, ticket, unflushed);
        flushing.ConfigureAwait(false).GetAwaiter().UnsafeOnCompleted(_onRoundFlushed);
        return false;
    }

    private void OnRoundFlushed()
    {
        var (round, flushing, covers, ticket, unflushed) = _running;
        _running = default;
        var error = Settle(flushing, covers, ticket, unflushed);
        if (TakeNextRound() is not { } next)
        {
            round!.Complete(error);
            return;
        }
        if (IoCompletionThread.IsCurrent && !_target.FlushBlocksThread)
        {
            // The next round's FSYNC goes to the kernel first and runs there while this round's waiters are answered.
            var finished = StartRound(next);
            round!.Complete(error);
            if (finished && TakeNextRound() is { } after) RunRoundsElsewhereOrHere(after);
            return;
        }
        round!.Complete(error);
        RunRoundsElsewhereOrHere(next);
    }

    private void RunRoundsElsewhereOrHere(FlushRound round)
    {
        if (MustLeaveThisThread()) QueueRound(round);
        else RunRounds(round, fromCaller: false);
    }

    private void FinishRound(FlushRound round, ValueTask flushing, long covers, FlushTicket? ticket, UnflushedChanges.FlushTicket unflushed) =>
        round.Complete(Settle(flushing, covers, ticket, unflushed));

    /// <summary>The flush's outcome: on success every change it covers counts as durable; the error otherwise.</summary>
    private Exception? Settle(ValueTask flushing, long covers, FlushTicket? ticket, UnflushedChanges.FlushTicket unflushed)
    {
        try
        {
            flushing.GetAwaiter().GetResult();
        }
        catch (Exception e)
        {
            return e;
        }
        Interlocked.Exchange(ref _flushedChanges, covers);
        if (ticket is { } t) DirtyAge!.EndFlush(t);
        Unflushed.EndFlush(unflushed);
        return null;
    }

    /// <summary>The round that waited for the one just finished, or null (then no flush runs any more).</summary>
    private FlushRound? TakeNextRound()
    {
        lock (_roundLock)
        {
            var next = _nextRound;
            if (next is null)
            {
                _flushRunning = false;
                return null;
            }
            _nextRound = null;
            return next;
        }
    }

    private void QueueRound(FlushRound round)
    {
        _queuedRound = round;
        ThreadPool.UnsafeQueueUserWorkItem(_roundWorkItem, preferLocal: false);
    }

    private FlushRound RentRound() => _freeRounds.Count > 0 ? _freeRounds.Pop() : new FlushRound(_recycleRound);

    private void RecycleRound(FlushRound round)
    {
        lock (_roundLock)
        {
            if (_freeRounds.Count < 4) _freeRounds.Push(round);
        }
    }

    /// <summary>Runs a queued round on a pool thread (one at a time: only the running flush queues one).</summary>
    private sealed class RoundWorkItem(CacheModeLayer layer) : IThreadPoolWorkItem
    {
        public void Execute()
        {
            var round = layer._queuedRound!;
            layer._queuedRound = null;
            layer.RunRounds(round, fromCaller: false);
        }
    }

    /// <summary>Asks for a durable flush in the background now, when the max-dirty-age flusher runs; false without one.</summary>
    public bool RequestBackgroundFlush()
    {
        if (DirtyAge is null) return false;
        DirtyAge.RequestFlush();
        return true;
    }

    /// <summary>Stops the max-dirty-age flusher (waiting for a flush it runs); does not flush: a clean close is the format's.</summary>
    public ValueTask DisposeAsync() => DirtyAge?.DisposeAsync() ?? ValueTask.CompletedTask;

    private void NoteVolatileChange(long length)
    {
        Unflushed.NoteChangeCompleted(length);
        DirtyAge?.NoteChangeCompleted();
    }

    /// <summary>Unsafe mode's FLUSH and FUA: to the OS now, the rest (if the format left some) by the background flush.</summary>
    private ValueTask FlushToOsAsync(CancellationToken cancellationToken)
    {
        var flushing = _target.FlushToOsAsync(DirtyAge is not null, cancellationToken);
        if (!flushing.IsCompletedSuccessfully) return RequestAfterAsync(flushing);
        if (flushing.Result) DirtyAge?.RequestFlush();
        return ValueTask.CompletedTask;
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask RequestAfterAsync(ValueTask<bool> flushing)
    {
        if (await flushing.ConfigureAwait(false)) DirtyAge?.RequestFlush();
    }

    private ValueTask FlushToOsThenNoteAsync(long length, CancellationToken cancellationToken)
    {
        var flushing = FlushToOsAsync(cancellationToken);
        if (!flushing.IsCompletedSuccessfully) return NoteAfterAsync(flushing, length);
        NoteVolatileChange(length);
        return ValueTask.CompletedTask;
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask NoteAfterAsync(ValueTask flushing, long length)
    {
        await flushing.ConfigureAwait(false);
        NoteVolatileChange(length);
    }
}
