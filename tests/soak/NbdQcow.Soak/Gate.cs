namespace NbdQcow.Soak;

/// <summary>Lets the request loops run (open) or holds them before their next request (closed).</summary>
public sealed class Gate
{
    private readonly Lock _lock = new();
    private TaskCompletionSource _opened = NewOpened();

    public Gate() => _opened.SetResult();

    public bool IsOpen { get { lock (_lock) return _opened.Task.IsCompleted; } }

    public Task WaitOpenAsync(CancellationToken cancellationToken)
    {
        lock (_lock) return _opened.Task.WaitAsync(cancellationToken);
    }

    public void Open()
    {
        lock (_lock) _opened.TrySetResult();
    }

    public void Close()
    {
        lock (_lock)
            if (_opened.Task.IsCompleted) _opened = NewOpened();
    }

    private static TaskCompletionSource NewOpened() => new(TaskCreationOptions.RunContinuationsAsynchronously);
}
