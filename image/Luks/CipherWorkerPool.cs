namespace NbdQcow.Image.Luks;

/// <summary>
/// Idle cipher workers (AES transforms and scratch buffers) shared by every request of one image, without a lock:
/// renting takes a worker out of a slot with one exchange, returning puts it into an empty slot with one
/// compare-exchange. Once warm, requests allocate nothing; a worker returned when every slot is taken (more
/// requests at once than slots) is disposed.
/// </summary>
internal sealed class CipherWorkerPool<TWorker>(Func<TWorker> create) : IDisposable
    where TWorker : class, IDisposable
{
    private readonly TWorker?[] _slots = new TWorker?[Math.Max(8, 2 * Environment.ProcessorCount)];

    public TWorker Rent()
    {
        for (int i = 0; i < _slots.Length; i++)
        {
            if (Volatile.Read(ref _slots[i]) is not null && Interlocked.Exchange(ref _slots[i], null) is { } worker)
                return worker;
        }
        return create();
    }

    public void Return(TWorker worker)
    {
        for (int i = 0; i < _slots.Length; i++)
        {
            if (Volatile.Read(ref _slots[i]) is null && Interlocked.CompareExchange(ref _slots[i], worker, null) is null)
                return;
        }
        worker.Dispose();
    }

    public void Dispose()
    {
        for (int i = 0; i < _slots.Length; i++)
            Interlocked.Exchange(ref _slots[i], null)?.Dispose();
    }
}
