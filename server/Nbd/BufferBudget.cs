namespace NbdQcow.Server.Nbd;

/// <summary>
/// Server-wide bound on payload bytes held for requests in flight (WRITE payloads read, READ data waiting to be
/// sent). The receive loop takes its share before reading a payload or dispatching a READ and stops while the
/// budget is spent, so clients that queue large reads and never read the replies hold at most the budget.
/// Two rules keep it from deadlocking or being taken by one client: a request is always granted when nothing
/// at all is held, and one connection holds at most <see cref="PerConnectionLimit"/> unless it holds nothing.
/// Buffers come from <see cref="Buffers"/>, which gives large ones back to the runtime once the server is idle.
/// </summary>
public sealed class BufferBudget
{
    private readonly object _lock = new();
    private readonly List<Waiter> _waiters = [];
    private long _used;
    private long _idleSince = Environment.TickCount64;

    public BufferBudget(long capacity)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, (long)Protocol.NbdLimits.MaxPayload);
        Capacity = capacity;
        PerConnectionLimit = Math.Max(capacity / 4, Protocol.NbdLimits.MaxPayload);
        Buffers = new PayloadBufferPool(retainLimit: capacity / 2);
    }

    public long Capacity { get; }

    /// <summary>What one connection may hold (a quarter of the budget, at least one largest request).</summary>
    public long PerConnectionLimit { get; }

    public PayloadBufferPool Buffers { get; }

    /// <summary>Bytes granted and not yet released.</summary>
    public long Used
    {
        get
        {
            lock (_lock)
            {
                return _used;
            }
        }
    }

    /// <summary>
    /// Some request waits because the server-wide budget is spent (not only because its own connection holds its
    /// share): other connections' unread replies are in its way.
    /// </summary>
    public bool IsContended
    {
        get
        {
            lock (_lock)
            {
                foreach (var waiter in _waiters)
                {
                    var withinShare = waiter.Account.Held == 0 || waiter.Account.Held + waiter.Bytes <= PerConnectionLimit;
                    if (withinShare && _used != 0 && _used + waiter.Bytes > Capacity)
                    {
                        return true;
                    }
                }
                return false;
            }
        }
    }

    /// <summary>Milliseconds since nothing was held (0 while something is).</summary>
    public long IdleMilliseconds
    {
        get
        {
            lock (_lock)
            {
                return _used == 0 ? Environment.TickCount64 - _idleSince : 0;
            }
        }
    }

    /// <summary>Bytes a payload of <paramref name="length"/> costs: the size of the buffer it is given.</summary>
    public static long ChargeFor(long length) => length <= 0 ? 0 : PayloadBufferPool.BufferSizeFor((int)length);

    /// <summary>Completes at once when <paramref name="bytes"/> fit, else when enough is released (or on cancellation).</summary>
    public ValueTask AcquireAsync(BufferAccount account, long bytes, CancellationToken cancellationToken)
    {
        if (bytes == 0)
        {
            return ValueTask.CompletedTask;
        }
        lock (_lock)
        {
            if (Fits(account, bytes))
            {
                Grant(account, bytes);
                return ValueTask.CompletedTask;
            }
            var waiter = new Waiter(account, bytes);
            _waiters.Add(waiter);
            if (cancellationToken.CanBeCanceled)
            {
                waiter.Registration = cancellationToken.UnsafeRegister(static (state, token) =>
                {
                    var (budget, w) = ((BufferBudget, Waiter))state!;
                    bool removed;
                    lock (budget._lock)
                    {
                        removed = budget._waiters.Remove(w);
                    }
                    if (removed)
                    {
                        w.Completion.TrySetCanceled(token);
                    }
                }, (this, waiter));
            }
            return new ValueTask(waiter.Completion.Task);
        }
    }

    public void Release(BufferAccount account, long bytes)
    {
        if (bytes == 0)
        {
            return;
        }
        List<Waiter>? granted = null;
        lock (_lock)
        {
            _used -= bytes;
            account.Held -= bytes;
            if (_used == 0)
            {
                _idleSince = Environment.TickCount64;
            }
            for (var i = 0; i < _waiters.Count; i++)
            {
                var waiter = _waiters[i];
                if (Fits(waiter.Account, waiter.Bytes))
                {
                    Grant(waiter.Account, waiter.Bytes);
                    _waiters.RemoveAt(i--);
                    (granted ??= []).Add(waiter);
                }
            }
        }
        if (granted is not null)
        {
            foreach (var waiter in granted)
            {
                waiter.Registration.Unregister();
                waiter.Completion.TrySetResult();
            }
        }
    }

    private bool Fits(BufferAccount account, long bytes) =>
        (_used == 0 || _used + bytes <= Capacity)
        && (account.Held == 0 || account.Held + bytes <= PerConnectionLimit);

    private void Grant(BufferAccount account, long bytes)
    {
        _used += bytes;
        account.Held += bytes;
    }

    private sealed class Waiter(BufferAccount account, long bytes)
    {
        public BufferAccount Account { get; } = account;
        public long Bytes { get; } = bytes;
        public TaskCompletionSource Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public CancellationTokenRegistration Registration { get; set; }
    }
}
