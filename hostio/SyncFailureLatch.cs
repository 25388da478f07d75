using NbdQcow.HostIo.Native;

namespace NbdQcow.HostIo;

/// <summary>
/// Remembers the first failed fdatasync of any file of one image and refuses every later one. After a failed
/// fdatasync Linux may have dropped the dirty pages it was writing and marked them clean, so a later fdatasync
/// can succeed without them: reporting that as a successful flush would lie about writes that are gone. Only
/// reopening the image (which checks it) clears the state.
/// </summary>
public sealed class SyncFailureLatch
{
    private HostIoException? _failure;
    private Action<HostIoException>? _onFirstFailure;

    /// <summary>The first fdatasync failure, or null while every fdatasync succeeded.</summary>
    public HostIoException? Failure => Volatile.Read(ref _failure);

    /// <summary>When the first failure happened (UTC), or null.</summary>
    public DateTimeOffset? FailedAt { get; private set; }

    public bool HasFailed => Failure is not null;

    /// <summary>
    /// Called once, on the failing thread, with the first failure (the image marks itself dirty here); when the
    /// latch has already failed, called at once.
    /// </summary>
    public void OnFirstFailure(Action<HostIoException> action)
    {
        _onFirstFailure = action;
        if (Failure is { } failure) action(failure);
    }

    /// <summary>Wraps every file <paramref name="factory"/> opens so its fdatasync goes through this latch.</summary>
    public HostFileFactory Wrap(HostFileFactory factory) => (path, options) =>
    {
        var file = factory(path, options);
        return options.ReadOnly ? file : new SyncLatchedHostFile(file, this);
    };

    /// <summary>Runs one fdatasync of <paramref name="file"/> unless a sync failed before; a failure latches.</summary>
    public void Sync(IHostFile file)
    {
        ThrowIfFailed(file.Path);
        try
        {
            file.Flush();
        }
        catch (HostIoException e)
        {
            if (!e.NeverStarted) Record(e);
            throw;
        }
        catch (IOException e)
        {
            var wrapped = new HostIoException("fdatasync", file.Path, LinuxFileCalls.EIO, e.Message, e);
            Record(wrapped);
            throw wrapped;
        }
    }

    /// <summary><see cref="Sync"/> through the file's asynchronous barrier.</summary>
    public ValueTask SyncAsync(IHostFile file)
    {
        ThrowIfFailed(file.Path);
        ValueTask pending;
        try
        {
            pending = file.FlushAsync();
        }
        catch (IOException e)
        {
            throw Latched(file, e);
        }
        return pending.IsCompletedSuccessfully ? pending : AwaitSyncAsync(file, pending);
    }

    [System.Runtime.CompilerServices.AsyncMethodBuilder(typeof(System.Runtime.CompilerServices.PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask AwaitSyncAsync(IHostFile file, ValueTask pending)
    {
        try
        {
            await pending.ConfigureAwait(false);
        }
        catch (IOException e)
        {
            throw Latched(file, e);
        }
    }

    private HostIoException Latched(IHostFile file, IOException e)
    {
        var failure = e as HostIoException ?? new HostIoException("fdatasync", file.Path, LinuxFileCalls.EIO, e.Message, e);
        // A sync that never started dropped nothing: a later one is still exact.
        if (!failure.NeverStarted) Record(failure);
        return failure;
    }

    /// <summary>Throws EIO when a sync failed before: nothing written since the last good flush can be promised.</summary>
    public void ThrowIfFailed(string path)
    {
        if (RefusalFor(path) is { } refusal) throw refusal;
    }

    /// <summary>The EIO a flush of <paramref name="path"/> gets after a failed sync, or null while none failed.</summary>
    public HostIoException? RefusalFor(string path)
    {
        if (Failure is not { } failure) return null;
        return new HostIoException("fdatasync", path, LinuxFileCalls.EIO,
            $"refused: an earlier fdatasync failed at {FailedAt:u} ({failure.Message}); the kernel may have dropped the writes it covered, " +
            "so no flush can succeed until the image is reopened and checked");
    }

    private void Record(HostIoException failure)
    {
        lock (this)
        {
            if (_failure is not null) return;
            FailedAt = DateTimeOffset.UtcNow;
            Volatile.Write(ref _failure, failure);
        }
        try
        {
            _onFirstFailure?.Invoke(failure);
        }
        catch (IOException)
        {
            // Marking the image dirty is best effort on a failing disk; the flush is refused either way.
        }
    }
}
