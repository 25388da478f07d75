namespace NbdQcow.Server.Nbd;

/// <summary>Per-connection limits.</summary>
public sealed record NbdSessionOptions
{
    /// <summary>Requests dispatched but not yet answered; the receive loop stops reading beyond this (back-pressure).</summary>
    public int MaxInFlight { get; init; } = 64;

    /// <summary>Of those, requests moving more than <see cref="LargeRequestThreshold"/> bytes; bounds buffer memory per connection.</summary>
    public int MaxLargeInFlight { get; init; } = 8;

    public int LargeRequestThreshold { get; init; } = 1024 * 1024;

    /// <summary>TLS credentials and mode; null serves plain text only (STARTTLS answered NBD_REP_ERR_UNSUP).</summary>
    public TlsUpgrade? Tls { get; init; }
}
