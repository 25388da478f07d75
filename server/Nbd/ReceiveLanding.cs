using System.Buffers;
using System.IO.Pipelines;

namespace NbdQcow.Server.Nbd;

/// <summary>
/// Lets a large WRITE payload arrive straight in its payload buffer, so the receive thread copies each byte once (the
/// kernel's recv) instead of twice (recv into a pipe segment, then pipe segment into the payload). One per plain
/// connection: its receive pipe takes segments from <see cref="Pool"/>, and while the session has armed it
/// (<see cref="TryArm"/>) the next segment the pipe asks for is the rest of the payload buffer itself; the socket loop
/// then receives into it and the session skips copying what is already in place.
/// <para>
/// Arming is exact only when the pipe holds nothing unread and the socket loop cannot put bytes anywhere before its
/// next segment, so <see cref="TryArm"/> refuses unless the session runs inline inside that loop's flush
/// (<see cref="ReaderScheduler"/> marks the thread) and the loop was not resumed under it by the writer side
/// (<see cref="WriterScheduler"/> marks that). A segment lent from a payload buffer stays the pipe's until filled:
/// a payload abandoned half-way must not go back to the buffer pool (<see cref="EndPayload"/> says whether one was lent).
/// </para>
/// </summary>
public sealed class ReceiveLanding
{
    /// <summary>Size of an ordinary segment (the socket loop asks for one byte at a time, so any size serves).</summary>
    public const int SegmentSize = 64 * 1024;

    /// <summary>Only a payload rest at least this large is worth lending as a segment.</summary>
    public const int MinimumLanding = SegmentSize;

    [ThreadStatic]
    private static ReceiveLanding? t_flushing;

    private readonly Lock _lock = new();
    private readonly Stack<Segment> _spareSegments = new();
    private Memory<byte> _armed;
    private bool _lent;
    private volatile bool _writerResumed;

    public ReceiveLanding()
    {
        Pool = new SegmentPool(this);
        ReaderScheduler = new FlushScheduler(this);
        WriterScheduler = new ResumeScheduler(this);
    }

    /// <summary>The receive pipe's memory pool.</summary>
    public MemoryPool<byte> Pool { get; }

    /// <summary>The receive pipe's reader scheduler: inline, marking the thread while the session runs inside the flush.</summary>
    public PipeScheduler ReaderScheduler { get; }

    /// <summary>The receive pipe's writer scheduler: inline, noting that the socket loop resumed.</summary>
    public PipeScheduler WriterScheduler { get; }

    /// <summary>Receive pipe options for one connection: <paramref name="template"/>'s thresholds with this pool and these schedulers.</summary>
    public PipeOptions Options(PipeOptions template) => new(
        pool: Pool, readerScheduler: ReaderScheduler, writerScheduler: WriterScheduler,
        pauseWriterThreshold: template.PauseWriterThreshold, resumeWriterThreshold: template.ResumeWriterThreshold,
        minimumSegmentSize: template.MinimumSegmentSize, useSynchronizationContext: false);

    /// <summary>The connection's socket, asked whether more bytes wait in the kernel (<see cref="SocketHasData"/>).</summary>
    public System.Net.Sockets.Socket? Socket { get; init; }

    /// <summary>The kernel holds received bytes the pipe has not taken yet (false without a socket, or once it is closed).</summary>
    public bool SocketHasData
    {
        get
        {
            try
            {
                return Socket is { } socket && socket.Available > 0;
            }
            catch (Exception ex) when (ex is ObjectDisposedException or System.Net.Sockets.SocketException)
            {
                return false;
            }
        }
    }

    /// <summary>A segment was lent from the current payload's buffer.</summary>
    public bool Lent
    {
        get
        {
            lock (_lock)
            {
                return _lent;
            }
        }
    }

    /// <summary>Segments lent from payload buffers so far (for tests and diagnostics).</summary>
    public long Landings { get; private set; }

    /// <summary>
    /// Asks that the pipe's next segment be <paramref name="rest"/>, the part of a payload buffer the next bytes of the
    /// stream belong in. The caller must have consumed everything the pipe held. False (nothing armed) unless that is
    /// known to be exact: see the class remarks.
    /// </summary>
    public bool TryArm(Memory<byte> rest)
    {
        if (rest.Length < MinimumLanding || t_flushing != this || _writerResumed)
        {
            return false;
        }
        lock (_lock)
        {
            _armed = rest;
        }
        return true;
    }

    /// <summary>Withdraws an arming not taken yet (the session resumed: what it armed for may be stale).</summary>
    public void Disarm()
    {
        lock (_lock)
        {
            _armed = default;
        }
    }

    /// <summary>Ends one payload: disarms, and says whether a segment was lent from its buffer.</summary>
    public bool EndPayload()
    {
        lock (_lock)
        {
            _armed = default;
            var lent = _lent;
            _lent = false;
            return lent;
        }
    }

    private Segment RentSegment(int minimumLength)
    {
        Segment? segment;
        Memory<byte> armed;
        lock (_lock)
        {
            armed = _armed;
            _armed = default;
            if (!armed.IsEmpty)
            {
                _lent = true;
                Landings++;
            }
            _spareSegments.TryPop(out segment);
        }
        segment ??= new Segment(this);
        if (!armed.IsEmpty)
        {
            segment.Lend(armed);
        }
        else
        {
            segment.Rent(Math.Clamp(minimumLength, 4096, SegmentSize));
        }
        return segment;
    }

    private void ReturnSegment(Segment segment)
    {
        lock (_lock)
        {
            _spareSegments.Push(segment);
        }
    }

    private sealed class Segment(ReceiveLanding owner) : IMemoryOwner<byte>
    {
        private byte[]? _array;

        public Memory<byte> Memory { get; private set; }

        public void Rent(int length)
        {
            _array = ArrayPool<byte>.Shared.Rent(length);
            Memory = _array;
        }

        public void Lend(Memory<byte> memory)
        {
            _array = null;
            Memory = memory;
        }

        public void Dispose()
        {
            if (_array is not null)
            {
                ArrayPool<byte>.Shared.Return(_array);
                _array = null;
            }
            Memory = default;
            owner.ReturnSegment(this);
        }
    }

    private sealed class SegmentPool(ReceiveLanding owner) : MemoryPool<byte>
    {
        public override int MaxBufferSize => int.MaxValue;

        public override IMemoryOwner<byte> Rent(int minBufferSize = -1) => owner.RentSegment(minBufferSize);

        protected override void Dispose(bool disposing)
        {
        }
    }

    private sealed class FlushScheduler(ReceiveLanding owner) : PipeScheduler
    {
        public override void Schedule(Action<object?> action, object? state)
        {
            var outer = t_flushing;
            t_flushing = owner;
            owner._writerResumed = false;
            try
            {
                action(state);
            }
            finally
            {
                t_flushing = outer;
            }
        }
    }

    private sealed class ResumeScheduler(ReceiveLanding owner) : PipeScheduler
    {
        public override void Schedule(Action<object?> action, object? state)
        {
            owner._writerResumed = true;
            action(state);
        }
    }
}
