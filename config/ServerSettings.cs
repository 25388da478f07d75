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
    public bool Verbose { get; init; }

    /// <summary>Control socket path, or null for none.</summary>
    public string? ControlPath { get; init; }

    /// <summary>Null when TLS is off.</summary>
    public TlsSettings? Tls { get; init; }
}
