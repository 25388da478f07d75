using System.Net;

namespace NbdQcow.Config;

/// <summary>The validated configuration the server runs with.</summary>
public sealed record ServerSettings
{
    public required IReadOnlyList<IPEndPoint> TcpEndPoints { get; init; }
    public string? SocketPath { get; init; }
    public required IReadOnlyList<ExportSettings> Exports { get; init; }
    public required string DefaultExport { get; init; }
    public int MaxInFlight { get; init; } = 64;

    public const int DefaultMaxConnections = 512;
    public const int DefaultHandshakeTimeoutSeconds = 10;
    public const long DefaultMaxBufferedBytes = 256L * 1024 * 1024;

    /// <summary>Connections served at once; beyond it the oldest still negotiating is dropped, or the new one is.</summary>
    public int MaxConnections { get; init; } = DefaultMaxConnections;

    /// <summary>Time a client has to finish negotiation; null: no limit.</summary>
    public TimeSpan? HandshakeTimeout { get; init; } = TimeSpan.FromSeconds(DefaultHandshakeTimeoutSeconds);

    /// <summary>Server-wide bound on payload bytes held for requests in flight (back-pressure beyond it).</summary>
    public long MaxBufferedBytes { get; init; } = DefaultMaxBufferedBytes;
    public bool Verbose { get; init; }

    /// <summary>Warnings and errors only (ignored with <see cref="Verbose"/>).</summary>
    public bool Quiet { get; init; }

    /// <summary>Where Prometheus scrapes /metrics, or null (off).</summary>
    public System.Net.IPEndPoint? MetricsEndPoint { get; init; }

    /// <summary>Control socket path, or null for none.</summary>
    public string? ControlPath { get; init; }

    /// <summary>Null when TLS is off.</summary>
    public TlsSettings? Tls { get; init; }
}
