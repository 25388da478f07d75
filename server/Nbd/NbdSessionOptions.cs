namespace NbdQcow.Server.Nbd;

/// <summary>Limits for connections: per connection, and the server-wide ones every connection shares.</summary>
public sealed record NbdSessionOptions
{
    /// <summary>Requests dispatched but not yet answered; the receive loop stops reading beyond this (back-pressure).</summary>
    public int MaxInFlight { get; init; } = 64;

    /// <summary>Of those, requests moving more than <see cref="LargeRequestThreshold"/> bytes; bounds buffer memory per connection.</summary>
    public int MaxLargeInFlight { get; init; } = 8;

    public int LargeRequestThreshold { get; init; } = 1024 * 1024;

    /// <summary>Connections served at once, server-wide.</summary>
    public int MaxConnections { get; init; } = 512;

    /// <summary>Time from accept until an export is chosen (TLS handshake included); null: no limit.</summary>
    public TimeSpan? HandshakeTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Server-wide bound on payload bytes held for requests in flight.</summary>
    public BufferBudget Budget { get; init; } = new(256L * 1024 * 1024);

    /// <summary>
    /// While requests wait for the buffer budget, a connection holding part of it that, for this long, has not
    /// moved enough of it (replies taken or WRITE payload sent: at least 1 MiB, and at a pace that returns
    /// everything it holds within 30 s) is closed.
    /// </summary>
    public TimeSpan ReplyStallTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>On shutdown, a connection whose replies make no progress for this long is closed.</summary>
    public TimeSpan ShutdownStallGrace { get; init; } = TimeSpan.FromSeconds(3);

    /// <summary>TLS credentials and mode; null serves plain text only (STARTTLS answered NBD_REP_ERR_UNSUP).</summary>
    public TlsUpgrade? Tls { get; init; }

    /// <summary>Connection counters (accepted, open, refused); null: not counted.</summary>
    public Metrics.ServerMetrics? Metrics { get; init; }
}
