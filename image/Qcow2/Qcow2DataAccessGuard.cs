namespace NbdQcow.Image.Qcow2;

/// <summary>
/// Tracks data I/O done outside the metadata lock on host clusters found by a mapping lookup (in-place
/// overwrites, reads), so a freed cluster is not handed out again while such I/O may still reach it.
/// <see cref="Enter"/> is called under the metadata lock right after the lookup; <see cref="WaitForEarlier"/>,
/// also under the lock, waits until every access entered before it has left. Two counters alternate by epoch.
/// </summary>
internal sealed class Qcow2DataAccessGuard
{
    private readonly int[] _active = new int[2];
    private int _epoch;

    /// <summary>Starts an access; pass the result to <see cref="Exit"/>. Call under the metadata lock.</summary>
    public int Enter()
    {
        int epoch = Volatile.Read(ref _epoch) & 1;
        Interlocked.Increment(ref _active[epoch]);
        return epoch;
    }

    public void Exit(int token) => Interlocked.Decrement(ref _active[token]);

    /// <summary>Waits for all accesses entered before this call. Call under the metadata lock.</summary>
    public void WaitForEarlier()
    {
        int old = Interlocked.Increment(ref _epoch) - 1 & 1;
        var spin = new SpinWait();
        while (Volatile.Read(ref _active[old]) != 0)
            spin.SpinOnce(sleep1Threshold: 20);
    }
}
