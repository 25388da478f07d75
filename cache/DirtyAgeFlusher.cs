namespace NbdQcow.Cache;

/// <summary>
/// The max-dirty-age policy: once the oldest unflushed change is older than <see cref="MaxAge"/>, run the
/// owner's durable flush on a timer, so a client that never flushes loses at most that window.
/// The owner calls <see cref="NoteChangeCompleted"/> after each change reaches the host (after pwrite
/// returns — a change still in flight when a flush starts is not covered by it), and brackets every
/// durable flush it does (its own, a client's, a FUA's) with <see cref="BeginFlush"/>/<see cref="EndFlush"/>.
/// Time comes from a <see cref="TimeProvider"/> so tests can drive it with a fake clock.
/// </summary>
public sealed class DirtyAgeFlusher : IAsyncDisposable
{
    private readonly Func<ValueTask> _flush;
    private readonly Action<Exception>? _onError;
    private readonly TimeProvider _time;
    private readonly ITimer _timer;
    private readonly object _gate = new();
    private long _changeSequence;
    // Timestamp (TimeProvider ticks) of the oldest change not known durable; long.MaxValue when clean.
    private long _dirtySince = long.MaxValue;
    private Task _running = Task.CompletedTask;
    private int _flushing;
    // Set by RequestFlush: the next timer tick flushes whatever the age, and a running flush runs once more.
    private bool _flushRequested;
    private bool _disposed;

    public DirtyAgeFlusher(TimeSpan maxAge, Func<ValueTask> flush, TimeProvider? timeProvider = null, Action<Exception>? onError = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(maxAge, TimeSpan.Zero);
        MaxAge = maxAge;
        _flush = flush;
        _onError = onError;
        _time = timeProvider ?? TimeProvider.System;
        _timer = _time.CreateTimer(static state => ((DirtyAgeFlusher)state!).OnTimer(), this, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
    }

    public TimeSpan MaxAge { get; }

    /// <summary>True while some completed change is not known to be durable.</summary>
    public bool IsDirty => Volatile.Read(ref _dirtySince) != long.MaxValue;

    /// <summary>Number of flushes this policy started on its own (for tests and stats).</summary>
    public long BackgroundFlushes { get; private set; }

    /// <summary>Call after a change (write, zero, trim, table write) has completed on the host file.</summary>
    public void NoteChangeCompleted()
    {
        Interlocked.Increment(ref _changeSequence);
        if (Volatile.Read(ref _dirtySince) != long.MaxValue) return;
        lock (_gate)
        {
            if (_dirtySince != long.MaxValue || _disposed) return;
            _dirtySince = _time.GetTimestamp();
            _timer.Change(MaxAge, Timeout.InfiniteTimeSpan);
        }
    }

    /// <summary>Call right before a durable flush (fdatasync) starts; pass the ticket to <see cref="EndFlush"/>.</summary>
    public FlushTicket BeginFlush() => new(Interlocked.Read(ref _changeSequence), _time.GetTimestamp());

    /// <summary>Call after the flush begun with <paramref name="ticket"/> succeeded: what completed before it is durable.</summary>
    public void EndFlush(FlushTicket ticket)
    {
        lock (_gate)
        {
            if (_dirtySince == long.MaxValue || _disposed) return;
            if (Interlocked.Read(ref _changeSequence) == ticket.ChangeSequence)
            {
                _dirtySince = long.MaxValue;
                _timer.Change(Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
                return;
            }
            // Changes completed after the flush began are no older than its start.
            if (ticket.Timestamp > _dirtySince)
            {
                _dirtySince = ticket.Timestamp;
                _timer.Change(Remaining(), Timeout.InfiniteTimeSpan);
            }
        }
    }

    private TimeSpan Remaining()
    {
        var age = _time.GetElapsedTime(_dirtySince);
        return age >= MaxAge ? TimeSpan.Zero : MaxAge - age;
    }

    /// <summary>
    /// Asks for the owner's durable flush now, in the background (on the timer, not on the caller's thread), whatever
    /// the age: for changes that could not be written to the OS without an ordered flush first (unsafe mode).
    /// </summary>
    public void RequestFlush()
    {
        lock (_gate)
        {
            if (_disposed) return;
            _flushRequested = true;
            // A running flush may have taken its tables already: it re-arms the timer when it ends.
            if (Volatile.Read(ref _flushing) == 0) _timer.Change(TimeSpan.Zero, Timeout.InfiniteTimeSpan);
        }
    }

    private void OnTimer()
    {
        lock (_gate)
        {
            if (_disposed) return;
            if (!_flushRequested)
            {
                if (_dirtySince == long.MaxValue) return;
                var remaining = Remaining();
                if (remaining > TimeSpan.Zero)
                {
                    _timer.Change(remaining, Timeout.InfiniteTimeSpan);
                    return;
                }
            }
            // One background flush at a time; the running one re-arms the timer when it ends.
            if (Interlocked.Exchange(ref _flushing, 1) == 1) return;
            _flushRequested = false;
            BackgroundFlushes++;
        }
        // Outside the lock: the flush itself calls BeginFlush/EndFlush, and must not block writers.
        var running = RunFlushAsync();
        lock (_gate)
        {
            if (!running.IsCompleted) _running = running;
        }
    }

    private async Task RunFlushAsync()
    {
        var failed = false;
        try
        {
            await _flush().ConfigureAwait(false);
        }
        catch (Exception e)
        {
            failed = true;
            _onError?.Invoke(e);
        }
        finally
        {
            Volatile.Write(ref _flushing, 0);
        }
        lock (_gate)
        {
            if (_disposed) return;
            if (_flushRequested && !failed)
            {
                _timer.Change(TimeSpan.Zero, Timeout.InfiniteTimeSpan);
                return;
            }
            if (_dirtySince == long.MaxValue) return;
            // After a failure try again one window later rather than spinning on a failing disk;
            // otherwise changes that arrived during the flush may already be due.
            _timer.Change(failed ? MaxAge : Remaining(), Timeout.InfiniteTimeSpan);
        }
    }

    /// <summary>Stops the timer and waits for a background flush in progress; does not flush itself.</summary>
    public async ValueTask DisposeAsync()
    {
        Task running;
        lock (_gate)
        {
            _disposed = true;
            running = _running;
        }
        await _timer.DisposeAsync().ConfigureAwait(false);
        try
        {
            await running.ConfigureAwait(false);
        }
        catch (Exception e)
        {
            _onError?.Invoke(e);
        }
    }
}
