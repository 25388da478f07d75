namespace NbdQcow.Cache;

/// <summary>How the server uses the host page cache and when writes become durable (qemu's names and meanings).</summary>
public enum CacheMode
{
    /// <summary>Host page cache used; client sees a volatile write cache; FLUSH/FUA honoured.</summary>
    Writeback,
    /// <summary>Host page cache used; every write durable before its reply; FLUSH is a no-op.</summary>
    Writethrough,
    /// <summary>O_DIRECT; client sees a volatile write cache; FLUSH/FUA honoured.</summary>
    None,
    /// <summary>O_DIRECT; every write durable before its reply.</summary>
    DirectSync,
    /// <summary>Host page cache used; flushes acknowledged at once, never synced on request.</summary>
    Unsafe,
}
