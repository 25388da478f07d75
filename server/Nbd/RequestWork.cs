using NbdQcow.Image;
using NbdQcow.Protocol;

namespace NbdQcow.Server.Nbd;

/// <summary>
/// One decoded request on its way to the thread pool; pooled per connection so the steady state allocates
/// nothing per request. The thread pool hop keeps synchronous image I/O off the receive loop.
/// </summary>
internal sealed class RequestWork : IThreadPoolWorkItem
{
    public RequestWork(NbdSession session)
    {
        Session = session;
        RunCompleted = () =>
        {
            var running = Running;
            Running = default;
            Session.Finish(running, this);
        };
    }

    /// <summary>The request while it runs without anyone awaiting it (<see cref="NbdSession.Start"/>).</summary>
    public ValueTask Running;

    /// <summary>Observes <see cref="Running"/> once it completes; created once per work item.</summary>
    public Action RunCompleted { get; }

    public NbdSession Session { get; }

    public NbdRequest Request;

    /// <summary>Pooled WRITE payload (rented; longer than the request), or empty.</summary>
    public PayloadBuffer Payload;

    /// <summary>WRITE whose payload exceeded the limit and was discarded: answer EINVAL.</summary>
    public bool Oversized;

    /// <summary>Holds a slot of the large-request limit, released when the reply is sent.</summary>
    public bool HoldsLargeSlot;

    /// <summary>Bytes of the server-wide buffer budget this request holds until its reply is sent.</summary>
    public long Charged;

    /// <summary>Reused extent list for BLOCK_STATUS.</summary>
    public readonly List<BlockExtent> Extents = new(16);

    /// <summary>Reused extents of the qemu meta contexts, one run per context in <see cref="StatusChunks"/>.</summary>
    public readonly List<StatusExtent> StatusExtents = new(16);

    /// <summary>Per selected qemu context: its id and where its extents sit in <see cref="StatusExtents"/>.</summary>
    public readonly List<(uint ContextId, int First, int Count)> StatusChunks = new(4);

    public void Execute() => Session.Start(this);

    public void Reset()
    {
        Request = default;
        Payload = default;
        Oversized = false;
        HoldsLargeSlot = false;
        Charged = 0;
        Extents.Clear();
        StatusExtents.Clear();
        StatusChunks.Clear();
    }
}
