namespace NbdQcow.Server.Nbd;

/// <summary>
/// Server-wide bound on payload bytes held for requests in flight (WRITE payloads read, READ data waiting to be
/// sent). The receive loop takes its share before reading a payload or dispatching a READ and stops while the
/// budget is spent, so clients that queue large reads and never read the replies hold at most the budget.
/// Two rules keep it from deadlocking or being taken by one client: a request is always granted when nothing
/// at all is held, and one connection holds at most <see cref="PerConnectionLimit"/> unless it holds nothing.
/// Grants are first come, first served once anyone waits for the budget: a small request never passes a larger
/// one queued before it (else a stream of small requests could starve a 32 MiB one forever). A request waiting
/// only for its own connection's share stands aside: it would otherwise hold up everyone behind it.
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
                // A waiter within its share waits for the server-wide budget: for room, or behind one that does.
                return AnyoneWaitsForRoom();
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
            if (Fits(account, bytes) && !AnyoneWaitsForRoom())
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
                    List<Waiter>? granted = null;
                    lock (budget._lock)
                    {
                        removed = budget._waiters.Remove(w);
                        // The waiters queued behind it may fit now.
                        budget.GrantWaiters(ref granted);
                    }
                    if (removed)
                    {
                        w.Completion.TrySetCanceled(token);
                    }
                    Complete(granted);
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
            GrantWaiters(ref granted);
        }
        Complete(granted);
    }

    /// <summary>
    /// In arrival order: the first waiter within its share that does not fit stops the grants, so nothing behind it
    /// takes the room it is waiting for. Waiters over their own share are skipped, not stopped at. Under the lock.
    /// </summary>
    private void GrantWaiters(ref List<Waiter>? granted)
    {
        for (var i = 0; i < _waiters.Count; i++)
        {
            var waiter = _waiters[i];
            if (!WithinShare(waiter.Account, waiter.Bytes))
            {
                continue;
            }
            if (!FitsCapacity(waiter.Bytes))
            {
                break;
            }
            Grant(waiter.Account, waiter.Bytes);
            _waiters.RemoveAt(i--);
            (granted ??= []).Add(waiter);
        }
    }

    /// <summary>Completes granted waiters, outside the lock.</summary>
    private static void Complete(List<Waiter>? granted)
    {
        if (granted is null)
        {
            return;
        }
        foreach (var waiter in granted)
        {
            waiter.Registration.Unregister();
            waiter.Completion.TrySetResult();
        }
    }

    private bool Fits(BufferAccount account, long bytes) => FitsCapacity(bytes) && WithinShare(account, bytes);

    private bool FitsCapacity(long bytes) => _used == 0 || _used + bytes <= Capacity;

    private bool WithinShare(BufferAccount account, long bytes) => account.Held == 0 || account.Held + bytes <= PerConnectionLimit;

    /// <summary>A waiter within its share is queued: a new request goes behind it, not past it.</summary>
    private bool AnyoneWaitsForRoom()
    {
        foreach (var waiter in _waiters)
        {
            if (WithinShare(waiter.Account, waiter.Bytes))
            {
                return true;
            }
        }
        return false;
    }

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
