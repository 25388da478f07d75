using System.Runtime.ExceptionServices;
using System.Threading.Tasks.Sources;

namespace NbdQcow.Cache;

/// <summary>
/// The callers that one durable flush covers: every one that asked before it started. It completes them all at once,
/// on the thread where the flush completed (an io_uring FSYNC completes on the ring's completion thread, which then
/// sends their replies itself: no thread-pool hop per waiter). Reused: a round goes back to its owner's free list once
/// the completer and every waiter are done with it.
/// </summary>
internal sealed class FlushRound : IValueTaskSource
{
    private readonly object _lock = new();
    private readonly List<(Action<object?> Continuation, object? State)> _continuations = new(16);
    private readonly Action<FlushRound> _recycle;
    private short _version;
    // Waiters that have not taken their result yet, plus one for the completer while it runs the continuations.
    private int _holders = 1;
    private bool _completed;
    private ExceptionDispatchInfo? _error;

    public FlushRound(Action<FlushRound> recycle) => _recycle = recycle;

    /// <summary>The newest change count a waiter asked to be covered.</summary>
    public long Target { get; private set; }

    /// <summary>False while every waiter passed a condition and that condition may say the flush is not needed.</summary>
    public bool Unconditional { get; private set; }

    /// <summary>The one condition the waiters passed (when not <see cref="Unconditional"/>).</summary>
    public Func<bool>? Condition { get; private set; }

    /// <summary>Adds a waiter (under the owner's lock, before the round starts).</summary>
    public ValueTask Join(long target, Func<bool>? stillNeeded)
    {
        if (target > Target) Target = target;
        if (stillNeeded is null) Unconditional = true;
        else if (Condition is null) Condition = stillNeeded;
        else if (!ReferenceEquals(Condition, stillNeeded)) Unconditional = true; // two conditions: just flush
        lock (_lock) _holders++;
        return new ValueTask(this, _version);
    }

    /// <summary>True when the flush has to run: some waiter needs it unconditionally, or the condition still holds.</summary>
    public bool IsNeeded() => Unconditional || Condition is null || Condition();

    /// <summary>Completes every waiter (null: the flush succeeded), running their continuations here.</summary>
    public void Complete(Exception? error)
    {
        lock (_lock)
        {
            _error = error is null ? null : ExceptionDispatchInfo.Capture(error);
            _completed = true;
        }
        // Frozen now: a continuation registered from here on runs at once in OnCompleted.
        for (var i = 0; i < _continuations.Count; i++)
        {
            var (continuation, state) = _continuations[i];
            continuation(state);
        }
        Release();
    }

    public ValueTaskSourceStatus GetStatus(short token)
    {
        ValidateToken(token);
        lock (_lock)
        {
            if (!_completed) return ValueTaskSourceStatus.Pending;
            return _error is null ? ValueTaskSourceStatus.Succeeded : ValueTaskSourceStatus.Faulted;
        }
    }

    public void OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags)
    {
        ValidateToken(token);
        lock (_lock)
        {
            if (!_completed)
            {
                _continuations.Add((continuation, state));
                return;
            }
        }
        continuation(state);
    }

    public void GetResult(short token)
    {
        ValidateToken(token);
        ExceptionDispatchInfo? error;
        lock (_lock)
        {
            if (!_completed) throw new InvalidOperationException("the flush has not completed");
            error = _error;
        }
        Release();
        error?.Throw();
    }

    private void Release()
    {
        lock (_lock)
        {
            if (--_holders > 0) return;
            _continuations.Clear();
            _error = null;
            _completed = false;
            _holders = 1;
            Target = 0;
            Unconditional = false;
            Condition = null;
            _version++;
        }
        _recycle(this);
    }

    private void ValidateToken(short token)
    {
        if (token != _version) throw new InvalidOperationException("a flush round's result was awaited twice");
    }
}
