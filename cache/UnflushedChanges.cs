using System.Diagnostics;

namespace NbdQcow.Cache;

/// <summary>
/// What a power loss would cost right now: bytes changed since the last durable flush and how long ago the oldest of
/// those changes completed (the loss window made visible). Kept whatever the max-dirty-age setting, so an operator
/// sees the window also where nothing bounds it. The owner calls <see cref="NoteChangeCompleted"/> after a change that
/// is not yet durable reaches the host, and brackets each durable flush with <see cref="BeginFlush"/>/<see cref="EndFlush"/>.
/// Reading is lock-free; the few writes per change are interlocked, so the hot path allocates nothing and never blocks.
/// </summary>
public sealed class UnflushedChanges
{
    private readonly object _gate = new();
    private long _sequence;
    private long _bytes;
    // Stopwatch timestamp of the oldest change not known durable; 0 when clean.
    private long _dirtySince;

    /// <summary>Called after each successful durable flush with how long it took.</summary>
    public Action<TimeSpan>? FlushCompleted { get; init; }

    /// <summary>Bytes changed (written, zeroed, trimmed) since the last durable flush that covered them.</summary>
    public long DirtyBytes => Math.Max(0, Interlocked.Read(ref _bytes));

    /// <summary>Age of the oldest change not yet durable; zero when everything is.</summary>
    public TimeSpan OldestAge
    {
        get
        {
            var since = Interlocked.Read(ref _dirtySince);
            return since == 0 ? TimeSpan.Zero : Stopwatch.GetElapsedTime(since);
        }
    }

    public void NoteChangeCompleted(long bytes)
    {
        Interlocked.Add(ref _bytes, bytes);
        Interlocked.Increment(ref _sequence);
        if (Interlocked.Read(ref _dirtySince) != 0) return;
        Interlocked.CompareExchange(ref _dirtySince, Math.Max(1, Stopwatch.GetTimestamp()), 0);
    }

    /// <summary>Call right before a durable flush starts; pass the ticket to <see cref="EndFlush"/> once it succeeded.</summary>
    public FlushTicket BeginFlush() => new(Interlocked.Read(ref _sequence), Stopwatch.GetTimestamp(), Interlocked.Read(ref _bytes));

    /// <summary>The flush begun with <paramref name="ticket"/> succeeded: what completed before it is durable.</summary>
    public void EndFlush(FlushTicket ticket)
    {
        lock (_gate)
        {
            Interlocked.Add(ref _bytes, -ticket.Bytes);
            if (Interlocked.Read(ref _sequence) == ticket.Sequence)
            {
                Interlocked.Exchange(ref _dirtySince, 0);
            }
            else if (Interlocked.Read(ref _dirtySince) is var since && since != 0 && since < ticket.Timestamp)
            {
                // Changes completed after the flush began are no older than its start.
                Interlocked.Exchange(ref _dirtySince, ticket.Timestamp);
            }
        }
        FlushCompleted?.Invoke(Stopwatch.GetElapsedTime(ticket.Timestamp));
    }

    /// <summary>The state when a flush began.</summary>
    public readonly record struct FlushTicket(long Sequence, long Timestamp, long Bytes);
}
