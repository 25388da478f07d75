using System.Runtime.InteropServices;
using NbdQcow.HostIo.Native;

namespace NbdQcow.HostIo.IoUring;

/// <summary>
/// One io_uring instance: the mapped submission and completion rings, a pool of operations (one per completion
/// slot, which also bounds what is in flight so the completion ring cannot overflow), and a reaper thread that
/// waits for completions and hands each to its awaiter. Submissions are written under one lock and entered with
/// one io_uring_enter per batch; while a <see cref="HostIoBatch"/> is open they wait in it and go in together
/// when it closes.
/// A hard io_uring_enter failure (anything but EINTR/EAGAIN/EBUSY) breaks the ring for good: the entries the
/// kernel did not take complete with <see cref="NotSubmitted"/>, later rents are refused (the files then use the
/// plain synchronous calls) and the owner is told once.
/// </summary>
internal sealed unsafe class IoUringRing : IDisposable
{
    private const uint SubmissionEntries = 256;
    private const uint CompletionEntries = 4096;
    private const ulong WakeUserData = ulong.MaxValue;

    /// <summary>The result of an operation the kernel never took because io_uring_enter failed (not an errno).</summary>
    public const int NotSubmitted = int.MinValue;

    private readonly int _ringFd;
    private readonly nint _sqRing;
    private readonly nuint _sqRingSize;
    private readonly nint _cqRing;
    private readonly nuint _cqRingSize;
    private readonly nint _sqes;
    private readonly nuint _sqesSize;
    private readonly uint* _sqTail;
    private readonly uint _sqMask;
    private readonly uint _sqCapacity;
    private readonly uint* _sqArray;
    private readonly uint* _cqHead;
    private readonly uint* _cqTail;
    private readonly uint _cqMask;
    private readonly IoUringCalls.CompletionEntry* _cqes;
    private readonly IoUringCalls.SubmissionEntry* _sqEntries;
    private readonly object _submitLock = new();
    private readonly IoUringOperation[] _operations;
    private readonly Stack<int> _freeSlots;
    private readonly Thread _reaper;
    private readonly HostIoBatch? _batch;
    private readonly Action<int>? _onBroken;
    private readonly int _failEnterAt;
    private readonly bool _inlineShortCompletions;
    private int _submittingEnters;
    private int _brokenErrno;
    private uint _sqLocalTail;
    private bool _disposed;

    private IoUringRing(int ringFd, in IoUringCalls.Params p, nint sqRing, nuint sqRingSize, nint cqRing, nuint cqRingSize,
        nint sqes, nuint sqesSize, HostIoBatch? batch, Action<int>? onBroken, int failEnterAt, bool inlineShortCompletions)
    {
        _inlineShortCompletions = inlineShortCompletions;
        _onBroken = onBroken;
        _failEnterAt = failEnterAt;
        _ringFd = ringFd;
        _sqRing = sqRing;
        _sqRingSize = sqRingSize;
        _cqRing = cqRing;
        _cqRingSize = cqRingSize;
        _sqes = sqes;
        _sqesSize = sqesSize;
        _batch = batch;
        _sqTail = (uint*)(sqRing + (nint)p.SqOff.Tail);
        _sqMask = *(uint*)(sqRing + (nint)p.SqOff.RingMask);
        _sqCapacity = *(uint*)(sqRing + (nint)p.SqOff.RingEntries);
        _sqArray = (uint*)(sqRing + (nint)p.SqOff.Array);
        _cqHead = (uint*)(cqRing + (nint)p.CqOff.Head);
        _cqTail = (uint*)(cqRing + (nint)p.CqOff.Tail);
        _cqMask = *(uint*)(cqRing + (nint)p.CqOff.RingMask);
        _cqes = (IoUringCalls.CompletionEntry*)(cqRing + (nint)p.CqOff.Cqes);
        _sqEntries = (IoUringCalls.SubmissionEntry*)sqes;
        _sqLocalTail = Volatile.Read(ref *_sqTail);
        // Leave room for the wake-up entry Dispose submits.
        var slots = (int)Math.Min(p.CqEntries - 1, 65536u);
        _operations = new IoUringOperation[slots];
        _freeSlots = new Stack<int>(slots);
        for (var i = slots - 1; i >= 0; i--)
        {
            _operations[i] = new IoUringOperation(this, i);
            _freeSlots.Push(i);
        }
        _reaper = new Thread(ReapLoop) { IsBackground = true, Name = "io_uring reaper" };
        _reaper.Start();
    }

    /// <summary>
    /// Sets up a ring, or returns null with the errno the kernel refused it with (ENOSYS: no io_uring; EPERM: a
    /// seccomp filter or io_uring_disabled; ENOMEM: locked-memory limit; EINVAL: a kernel older than 5.6).
    /// <paramref name="onBroken"/> is called once with the errno of a hard io_uring_enter failure;
    /// <paramref name="failEnterAt"/> (tests only, 0 = never) makes that submitting io_uring_enter fail with ENOMEM.
    /// </summary>
    public static IoUringRing? TrySetUp(HostIoBatch? batch, out int errno, Action<int>? onBroken = null, int failEnterAt = 0,
        bool inlineShortCompletions = true)
    {
        var p = new IoUringCalls.Params { Flags = IoUringCalls.SetupCqSize | IoUringCalls.SetupClamp, CqEntries = CompletionEntries };
        var fd = IoUringCalls.Setup(SubmissionEntries, &p);
        if (fd < 0)
        {
            errno = Marshal.GetLastPInvokeError();
            return null;
        }
        if ((p.Features & IoUringCalls.FeatRwCurPos) == 0 || (p.Features & IoUringCalls.FeatSingleMmap) == 0)
        {
            // Before 5.6 there is no IORING_OP_READ/WRITE.
            LinuxFileCalls.Close(fd);
            errno = LinuxFileCalls.EINVAL;
            return null;
        }
        var sqRingSize = (nuint)(p.SqOff.Array + p.SqEntries * sizeof(uint));
        var cqRingSize = (nuint)(p.CqOff.Cqes + p.CqEntries * (uint)sizeof(IoUringCalls.CompletionEntry));
        // One mapping serves both rings (IORING_FEAT_SINGLE_MMAP).
        var ringSize = Math.Max(sqRingSize, cqRingSize);
        var sqesSize = (nuint)(p.SqEntries * (uint)sizeof(IoUringCalls.SubmissionEntry));
        var ring = IoUringCalls.Mmap(0, ringSize, IoUringCalls.PROT_READ | IoUringCalls.PROT_WRITE,
            IoUringCalls.MAP_SHARED | IoUringCalls.MAP_POPULATE, fd, IoUringCalls.OffSqRing);
        if (ring == -1)
        {
            errno = Marshal.GetLastPInvokeError();
            LinuxFileCalls.Close(fd);
            return null;
        }
        var sqes = IoUringCalls.Mmap(0, sqesSize, IoUringCalls.PROT_READ | IoUringCalls.PROT_WRITE,
            IoUringCalls.MAP_SHARED | IoUringCalls.MAP_POPULATE, fd, IoUringCalls.OffSqes);
        if (sqes == -1)
        {
            errno = Marshal.GetLastPInvokeError();
            IoUringCalls.Munmap(ring, ringSize);
            LinuxFileCalls.Close(fd);
            return null;
        }
        errno = 0;
        return new IoUringRing(fd, p, ring, ringSize, ring, 0, sqes, sqesSize, batch, onBroken, failEnterAt, inlineShortCompletions);
    }

    /// <summary>Whether the reaper runs the continuations of short transfers itself (see <see cref="IoUringOperation.CompleteInline"/>).</summary>
    public bool InlineShortCompletions => _inlineShortCompletions;

    /// <summary>True once an io_uring_enter failed hard: nothing more is submitted to this ring.</summary>
    public bool IsBroken => Volatile.Read(ref _brokenErrno) != 0;

    /// <summary>An operation to fill and <see cref="Submit"/>, or null when every completion slot is taken or the ring is broken.</summary>
    public IoUringOperation? TryRent()
    {
        lock (_freeSlots)
        {
            return !_disposed && !IsBroken && _freeSlots.TryPop(out var slot) ? _operations[slot] : null;
        }
    }

    /// <summary>
    /// True when nothing is in flight on this ring and no batch holds submissions: a lone request gains nothing from
    /// the ring then (nothing to share an io_uring_enter with) and pays the completion thread's wake-up.
    /// </summary>
    public bool IsIdle
    {
        get
        {
            if (_batch is { IsOpen: true }) return false;
            lock (_freeSlots) return _freeSlots.Count == _operations.Length;
        }
    }

    public void Return(IoUringOperation operation)
    {
        lock (_freeSlots) _freeSlots.Push(operation.Slot);
    }

    /// <summary>Submits <paramref name="operation"/> now, or when the open batch closes; its task completes with the kernel's result.</summary>
    public ValueTask<int> Submit(IoUringOperation operation)
    {
        var task = operation.AsValueTask();
        if (_batch is null || !_batch.TryDefer(operation))
        {
            SubmitNow(new ReadOnlySpan<IoUringOperation>(in operation));
        }
        return task;
    }

    /// <summary>
    /// Writes the entries and enters them, <see cref="_sqCapacity"/> at a time. After a hard failure every entry not
    /// taken by the kernel completes with <see cref="NotSubmitted"/> (its memory is never touched by the kernel).
    /// </summary>
    internal void SubmitNow(ReadOnlySpan<IoUringOperation> operations)
    {
        var brokeNow = 0;
        lock (_submitLock)
        {
            while (!operations.IsEmpty && !IsBroken)
            {
                var count = (int)Math.Min((uint)operations.Length, _sqCapacity);
                for (var i = 0; i < count; i++)
                {
                    var op = operations[i];
                    var index = _sqLocalTail & _sqMask;
                    var entry = &_sqEntries[index];
                    *entry = default;
                    entry->Opcode = op.Opcode;
                    entry->Fd = op.Fd;
                    entry->Offset = (ulong)op.Offset;
                    entry->Address = (ulong)op.Address;
                    entry->Length = op.Length;
                    entry->OpFlags = op.OpFlags;
                    entry->UserData = (ulong)op.Slot;
                    op.InKernel = true;
                    _sqArray[index] = index;
                    _sqLocalTail++;
                }
                Volatile.Write(ref *_sqTail, _sqLocalTail);
                uint left;
                int errno;
                if (_failEnterAt > 0 && ++_submittingEnters == _failEnterAt)
                {
                    (errno, left) = (IoUringCalls.ENOMEM, (uint)count);
                }
                else
                {
                    errno = EnterAll((uint)count, out left);
                }
                if (errno != 0)
                {
                    // The last `left` entries were not taken: take them back off the ring so that no later enter
                    // (the wake-up at dispose) submits them after their buffers went back to their owners.
                    _sqLocalTail -= left;
                    Volatile.Write(ref *_sqTail, _sqLocalTail);
                    Volatile.Write(ref _brokenErrno, errno);
                    brokeNow = errno;
                    operations = operations[(count - (int)left)..];
                    break;
                }
                operations = operations[count..];
            }
            // Whatever is left never went to the kernel: the ring broke in this call or before.
            foreach (var op in operations)
            {
                op.InKernel = false;
                op.Complete(NotSubmitted);
            }
        }
        if (brokeNow != 0) _onBroken?.Invoke(brokeNow);
    }

    /// <summary>Enters <paramref name="count"/> entries; 0, or the errno of a hard failure with how many were not taken.</summary>
    private int EnterAll(uint count, out uint left)
    {
        var spins = 0;
        while (count > 0)
        {
            var consumed = IoUringCalls.Enter(_ringFd, count, 0, 0);
            if (consumed >= 0)
            {
                count -= (uint)consumed;
                continue;
            }
            var errno = Marshal.GetLastPInvokeError();
            // EAGAIN/EBUSY: the kernel is short of memory or completions; the reaper frees them, so try again.
            if (errno is LinuxFileCalls.EINTR or LinuxFileCalls.EAGAIN or IoUringCalls.EBUSY && spins++ < 10_000)
            {
                if (errno != LinuxFileCalls.EINTR) Thread.Sleep(1);
                continue;
            }
            left = count;
            return errno;
        }
        left = 0;
        return 0;
    }

    private void ReapLoop()
    {
        IoCompletionThread.MarkCurrent();
        while (true)
        {
            var head = *_cqHead;
            var tail = Volatile.Read(ref *_cqTail);
            if (head == tail)
            {
                if (IoUringCalls.Enter(_ringFd, 0, 1, IoUringCalls.EnterGetEvents) < 0)
                {
                    var errno = Marshal.GetLastPInvokeError();
                    if (errno is not (LinuxFileCalls.EINTR or LinuxFileCalls.EAGAIN or IoUringCalls.EBUSY))
                    {
                        AbandonInFlight(errno);
                        return;
                    }
                }
                continue;
            }
            var stop = false;
            while (head != tail)
            {
                var cqe = _cqes[head & _cqMask];
                head++;
                if (cqe.UserData == WakeUserData)
                {
                    stop = true;
                    continue;
                }
                var operation = _operations[(int)cqe.UserData];
                operation.InKernel = false;
                operation.Complete(cqe.Result, mayRunInline: true);
            }
            Volatile.Write(ref *_cqHead, head);
            if (stop) return;
        }
    }

    /// <summary>
    /// The reaper can no longer wait for completions: nothing will ever complete what the kernel holds, so each such
    /// operation fails with EIO rather than wait forever, and the ring takes nothing more.
    /// </summary>
    private void AbandonInFlight(int errno)
    {
        var brokeNow = false;
        lock (_submitLock)
        {
            if (!IsBroken)
            {
                Volatile.Write(ref _brokenErrno, errno);
                brokeNow = true;
            }
            foreach (var operation in _operations)
            {
                if (!operation.InKernel) continue;
                operation.InKernel = false;
                operation.Complete(-LinuxFileCalls.EIO);
            }
        }
        if (brokeNow) _onBroken?.Invoke(errno);
    }

    public void Dispose()
    {
        lock (_freeSlots)
        {
            if (_disposed) return;
            _disposed = true;
        }
        // Every file using the ring is closed, so nothing is in flight: a no-op wakes the reaper, which then ends.
        lock (_submitLock)
        {
            var index = _sqLocalTail & _sqMask;
            _sqEntries[index] = new IoUringCalls.SubmissionEntry { Opcode = IoUringCalls.OpNop, UserData = WakeUserData };
            _sqArray[index] = index;
            _sqLocalTail++;
            Volatile.Write(ref *_sqTail, _sqLocalTail);
            if (EnterAll(1, out _) != 0)
            {
                // The ring is broken: the reaper may be waiting on it forever. It is a background thread and
                // everything it could complete was failed already, so leave it and the mappings alone.
                return;
            }
        }
        // A reaper that did not end may still read the rings: leave them mapped rather than fault.
        if (!_reaper.Join(TimeSpan.FromSeconds(5))) return;
        IoUringCalls.Munmap(_sqes, _sqesSize);
        IoUringCalls.Munmap(_sqRing, _sqRingSize);
        if (_cqRingSize != 0) IoUringCalls.Munmap(_cqRing, _cqRingSize);
        LinuxFileCalls.Close(_ringFd);
    }
}
