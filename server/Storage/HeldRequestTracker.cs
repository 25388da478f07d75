using NbdQcow.Image;
using NbdQcow.Server.Nbd;

namespace NbdQcow.Server.Storage;

/// <summary>
/// Counts the requests of one direction (writes or reads) an export holds while its storage fails, and turns
/// that into a state an operator can see: one log line when the export pauses, one when it resumes or gives up,
/// and a status text for the control socket ("writes paused: ENOSPC since ...").
/// </summary>
internal sealed class HeldRequestTracker(string exportName, string direction, ServerLog log, TimeProvider time)
{
    private readonly object _gate = new();
    private int _held;
    private string? _reason;
    private DateTimeOffset _since;
    private long _sinceTimestamp;

    /// <summary>Requests held right now.</summary>
    public int Held { get { lock (_gate) return _held; } }

    /// <summary>"writes paused: ENOSPC since 2026-12-05 00:10:00Z (3 requests held)", or null while not paused.</summary>
    public string? Status
    {
        get
        {
            lock (_gate)
            {
                return _reason is null ? null : $"{direction} paused: {_reason} since {_since:u} ({_held} request{(_held == 1 ? "" : "s")} held)";
            }
        }
    }

    public bool IsPaused { get { lock (_gate) return _reason is not null; } }

    /// <summary>A request starts being held because of <paramref name="error"/> (null: held behind an earlier one).</summary>
    public void Enter(BlockDeviceException? error, string policy, TimeSpan timeout)
    {
        lock (_gate)
        {
            _held++;
            if (_reason is not null) return;
            _reason = error is null ? "storage failing" : HostErrorNames.Describe(error);
            _since = time.GetUtcNow();
            _sinceTimestamp = time.GetTimestamp();
            log.Warn($"export '{exportName}': {direction} paused: {_reason} since {_since:u}" +
                     (error is null ? "" : $" ({error.Message})") +
                     $"; policy {policy}: holding requests and retrying for up to {timeout.TotalMilliseconds:0} ms");
        }
    }

    /// <summary>A held request finished: it succeeded (the storage works again) or the policy gave up on it.</summary>
    public void Exit(bool succeeded, BlockDeviceException? lastError)
    {
        lock (_gate)
        {
            _held--;
            if (_reason is null) return;
            var elapsed = time.GetElapsedTime(_sinceTimestamp);
            if (succeeded)
            {
                log.Warn($"export '{exportName}': {direction} resumed after {elapsed.TotalMilliseconds:0} ms paused ({_reason})");
                _reason = null;
            }
            else if (_held == 0)
            {
                log.Warn($"export '{exportName}': gave up on held {direction} after {elapsed.TotalMilliseconds:0} ms: " +
                         $"{(lastError is null ? _reason : HostErrorNames.Describe(lastError))} reported to the client");
                _reason = null;
            }
        }
    }
}
