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
    /// <summary>One durable flush at a time; see <see cref="DurableFlushAsync"/>.</summary>
    private readonly SemaphoreSlim _flushGate = new(1, 1);
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
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public async ValueTask DurableFlushAsync(Func<bool>? stillNeeded)
    {
        long target = Interlocked.Read(ref _completedChanges);
        // The format's fdatasyncs are synchronous: not on the thread that completes the export's other I/O (a
        // write-through write's continuation can get here on it), where they would also serialise the flushes that coalesce.
        if (IoCompletionThread.IsCurrent) await Task.Yield();
        await _flushGate.WaitAsync().ConfigureAwait(false);
        try
        {
            if (stillNeeded is not null && !stillNeeded()) return;
            if (Interlocked.Read(ref _flushedChanges) >= target && !_target.HasUnflushedState) return;
            long covers = Interlocked.Read(ref _completedChanges);
            var ticket = DirtyAge?.BeginFlush();
            var unflushed = Unflushed.BeginFlush();
            await _target.FlushToDiskAsync().ConfigureAwait(false);
            Interlocked.Exchange(ref _flushedChanges, covers);
            if (ticket is { } t) DirtyAge!.EndFlush(t);
            Unflushed.EndFlush(unflushed);
        }
        finally
        {
            _flushGate.Release();
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
