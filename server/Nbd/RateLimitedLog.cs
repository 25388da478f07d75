namespace NbdQcow.Server.Nbd;

/// <summary>
/// A warning that may repeat thousands of times a second (a connection flood): written at most once per
/// interval, with how many were left out since the last one.
/// </summary>
public sealed class RateLimitedLog
{
    private readonly ServerLog _log;
    private readonly long _intervalMs;
    private readonly object _lock = new();
    private long _lastWritten = long.MinValue;
    private long _suppressed;

    public RateLimitedLog(ServerLog log, TimeSpan interval)
    {
        _log = log;
        _intervalMs = (long)interval.TotalMilliseconds;
    }

    public void Warn(string message)
    {
        long suppressed;
        lock (_lock)
        {
            var now = Environment.TickCount64;
            if (_lastWritten != long.MinValue && now - _lastWritten < _intervalMs)
            {
                _suppressed++;
                return;
            }
            _lastWritten = now;
            suppressed = _suppressed;
            _suppressed = 0;
        }
        _log.Warn(suppressed == 0 ? message : $"{message} ({suppressed} more like this since the last report)");
    }
}
