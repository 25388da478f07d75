using System.Threading.Tasks.Sources;

namespace NbdQcow.HostIo.IoUring;

/// <summary>
/// One submission in flight on an <see cref="IoUringRing"/>: the entry to submit and the awaitable its completion
/// sets. Pooled by the ring (its slot number is the entry's user data), so a request allocates nothing.
/// </summary>
internal sealed class IoUringOperation(IoUringRing ring, int slot) : IValueTaskSource<int>
{
    // Continuations go to the thread pool unless the submitter marked the completion short (CompleteInline): the
    // reaper thread must never run request code that could block it for long.
    private ManualResetValueTaskSourceCore<int> _core = new() { RunContinuationsAsynchronously = true };

    public IoUringRing Ring => ring;

    public int Slot => slot;

    public byte Opcode;
    public int Fd;
    public long Offset;
    public nint Address;
    public uint Length;
    public uint OpFlags;

    /// <summary>
    /// The continuation is short (the rest of a small read or write and its reply): the reaper runs it itself instead of
    /// waking a pool thread for it.
    /// </summary>
    public bool CompleteInline;

    /// <summary>Written to the submission ring and not yet completed (only under the ring's submit lock or by the reaper).</summary>
    public bool InKernel;

    public ValueTask<int> AsValueTask() => new(this, _core.Version);

    /// <summary>Completes the awaiter; <paramref name="mayRunInline"/> only from the reaper, the one thread allowed to run a short continuation.</summary>
    public void Complete(int result, bool mayRunInline = false)
    {
        _core.RunContinuationsAsynchronously = !(mayRunInline && CompleteInline);
        _core.SetResult(result);
    }

    public int GetResult(short token)
    {
        try
        {
            return _core.GetResult(token);
        }
        finally
        {
            _core.Reset();
            ring.Return(this);
        }
    }

    public ValueTaskSourceStatus GetStatus(short token) => _core.GetStatus(token);

    public void OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
        _core.OnCompleted(continuation, state, token, flags);
}
