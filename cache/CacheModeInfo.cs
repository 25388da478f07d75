using NbdQcow.HostIo;

namespace NbdQcow.Cache;

/// <summary>What each <see cref="CacheMode"/> implies, and its CLI spelling.</summary>
public static class CacheModeInfo
{
    public static bool UsesODirect(this CacheMode mode) => mode is CacheMode.None or CacheMode.DirectSync;

    /// <summary>True when every write must be durable before it is acknowledged.</summary>
    public static bool IsWriteThrough(this CacheMode mode) => mode is CacheMode.Writethrough or CacheMode.DirectSync;

    /// <summary>True when a client FLUSH or FUA must reach stable storage.</summary>
    public static bool HonoursFlush(this CacheMode mode) => mode is CacheMode.Writeback or CacheMode.None;

    /// <summary>Modes where the max-dirty-age bound applies (the client sees a volatile cache).</summary>
    public static bool HasVolatileCache(this CacheMode mode) => mode is CacheMode.Writeback or CacheMode.None or CacheMode.Unsafe;

    /// <summary>
    /// The host-I/O engine an export of this mode uses when none is asked for, chosen by a side-by-side run of both
    /// engines (perf/FINDINGS.md): with O_DIRECT each request is a real device I/O, and io_uring's batched submission
    /// without a pool thread per request wins; buffered I/O mostly hits the page cache, where a plain call is cheaper
    /// than a ring round trip.
    /// </summary>
    public static AioEngine DefaultAio(this CacheMode mode) => mode.UsesODirect() ? AioEngine.IoUring : AioEngine.Threads;

    public static readonly string[] AioNames = ["threads", "io_uring"];

    public static string ToCliName(this AioEngine engine) => engine == AioEngine.IoUring ? "io_uring" : "threads";

    public static bool TryParseAio(string? text, out AioEngine engine)
    {
        switch (text?.Trim().ToLowerInvariant())
        {
            case "threads": engine = AioEngine.Threads; return true;
            case "io_uring": engine = AioEngine.IoUring; return true;
            default: engine = default; return false;
        }
    }

    public static string ToCliName(this CacheMode mode) => mode switch
    {
        CacheMode.Writeback => "writeback",
        CacheMode.Writethrough => "writethrough",
        CacheMode.None => "none",
        CacheMode.DirectSync => "directsync",
        CacheMode.Unsafe => "unsafe",
        _ => throw new ArgumentOutOfRangeException(nameof(mode)),
    };

    public static readonly string[] CliNames = ["writeback", "writethrough", "none", "directsync", "unsafe"];

    public static bool TryParse(string? text, out CacheMode mode)
    {
        switch (text?.Trim().ToLowerInvariant())
        {
            case "writeback": mode = CacheMode.Writeback; return true;
            case "writethrough": mode = CacheMode.Writethrough; return true;
            case "none": mode = CacheMode.None; return true;
            case "directsync": mode = CacheMode.DirectSync; return true;
            case "unsafe": mode = CacheMode.Unsafe; return true;
            default: mode = default; return false;
        }
    }
}
