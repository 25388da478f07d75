using NbdQcow.Image;

namespace NbdQcow.Server.Storage;

/// <summary>
/// One request held by an error policy: runs it again on each retry, remembering the last error so the client
/// gets that (not a timeout) when the policy gives up. The first run already failed before the request was held,
/// so the pipeline's first attempt reports that failure instead of repeating it at once.
/// </summary>
internal sealed class HeldAttempt<TState>(IBlockDevice device, TState state, Func<IBlockDevice, TState, CancellationToken, ValueTask> operation,
    BlockDeviceException? firstFailure)
{
    private BlockDeviceException? _pendingFailure = firstFailure;

    public BlockDeviceException? LastError { get; private set; } = firstFailure;

    public async ValueTask RunAsync()
    {
        if (_pendingFailure is { } failed)
        {
            _pendingFailure = null;
            throw failed;
        }
        try
        {
            // No token: a timeout or a departed client ends the waiting between attempts, never an attempt half-way
            // (the image layer finishes or cleans up each attempt itself).
            await operation(device, state, CancellationToken.None).ConfigureAwait(false);
        }
        catch (BlockDeviceException e)
        {
            LastError = e;
            throw;
        }
    }
}
