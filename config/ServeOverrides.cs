namespace NbdQcow.Config;

/// <summary>
/// What `nbdqcow serve` was given on its command line. With an IMAGE, the per-export options describe that
/// image's export (added after those of the config file); without one they override every configured export.
/// </summary>
public sealed record ServeOverrides
{
    public string? ImagePath { get; init; }
    public string? Listen { get; init; }
    /// <summary>The service manager handed over listening sockets: no default listen address is added.</summary>
    public bool SocketActivated { get; init; }
    public string? Socket { get; init; }
    public string? ExportName { get; init; }
    public string? Cache { get; init; }
    public string? MaxDirtyAge { get; init; }
    public bool? Journal { get; init; }
    public bool? ReadOnly { get; init; }
    public string? Snapshot { get; init; }
    public string? Format { get; init; }
    public string? Create { get; init; }
    /// <summary>"on", "off" (--no-lock) or "force-share" (--force-share).</summary>
    public string? Locking { get; init; }
    public bool? Inactive { get; init; }
    /// <summary>Persistent dirty bitmaps to offer (--bitmap, repeatable); null when none was named.</summary>
    public IReadOnlyList<string>? Bitmaps { get; init; }
    public string? WriteErrorPolicy { get; init; }
    public string? ReadErrorPolicy { get; init; }
    public string? ErrorRetryTimeout { get; init; }
    /// <summary>Control socket path (--control).</summary>
    public string? Control { get; init; }
    public string? Description { get; init; }
    /// <summary>--backing-root DIR.</summary>
    public string? BackingRoot { get; init; }
    /// <summary>--key-file FILE: the secret of an encrypted image.</summary>
    public string? KeyFile { get; init; }
    public bool? Verbose { get; init; }
    public string? MaxConnections { get; init; }
    public string? HandshakeTimeout { get; init; }
    public string? MaxBufferedBytes { get; init; }
    public string? Tls { get; init; }
    public string? TlsCertificates { get; init; }
    public bool? TlsVerifyPeer { get; init; }
}
