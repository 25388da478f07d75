using NbdQcow.Cache;

namespace NbdQcow.Bench;

/// <summary>
/// What a cache mode promises after a host power loss and after the server process is killed, in the
/// words of the durability contract in ARCHITECTURE.md (with the default max dirty age of 1000 ms). In every mode
/// except unsafe with max dirty age off, the image is never left corrupt (leaked clusters aside).
/// </summary>
internal static class BenchModeGuarantee
{
    public static string AfterPowerLoss(CacheMode mode)
    {
        if (mode.IsWriteThrough())
        {
            return "every acknowledged write survives";
        }
        if (mode.HonoursFlush())
        {
            return "writes acknowledged before a completed FLUSH, FUA writes, and every write older than "
                + "the max dirty age (default 1 s) survive; newer writes may be lost; image stays consistent";
        }
        // unsafe: FLUSH is acknowledged at once and never synced on request.
        return "only writes older than the max dirty age (default 1 s) survive, FLUSH promises nothing; "
            + "with --max-dirty-age off nothing is promised and the image may be corrupt";
    }

    public static string AfterProcessKill(CacheMode mode)
    {
        if (mode.IsWriteThrough())
        {
            return "every acknowledged write survives";
        }
        if (mode.HonoursFlush())
        {
            return "at least what survives a power loss: FLUSHed and FUA writes and writes older than the "
                + "max dirty age; image stays consistent";
        }
        return "writes acknowledged before a FLUSH (tables go to the OS, not to disk) and writes older than "
            + "the max dirty age survive; image stays consistent";
    }
}
