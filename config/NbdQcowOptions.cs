namespace NbdQcow.Config;

/// <summary>
/// The configuration as bound from JSON, NBDQCOW__* environment variables and command-line overrides.
/// Values stay strings here so <see cref="ServerSettingsValidator"/> can name the key and the allowed values
/// of anything wrong, instead of a binder exception.
/// </summary>
public sealed class NbdQcowOptions
{
    /// <summary>TCP endpoint(s), comma separated: "127.0.0.1:10809", "[::1]:10809"; "off" disables TCP.</summary>
    public string? Listen { get; set; }

    /// <summary>Unix socket path to listen on.</summary>
    public string? Socket { get; set; }

    /// <summary>Export served for the empty name ""; default: the first export.</summary>
    public string? DefaultExport { get; set; }

    /// <summary>Requests in flight per connection.</summary>
    public string? MaxInFlight { get; set; }

    public string? Verbose { get; set; }

    /// <summary>Log only warnings and errors (true/false); Verbose wins when both are set.</summary>
    public string? Quiet { get; set; }

    /// <summary>Prometheus metrics address HOST:PORT (served at /metrics), or "off" (the default).</summary>
    public string? Metrics { get; set; }

    /// <summary>Connections served at once, server-wide.</summary>
    public string? MaxConnections { get; set; }

    /// <summary>Seconds a client has to finish negotiation (TLS included), or "off".</summary>
    public string? HandshakeTimeout { get; set; }

    /// <summary>Server-wide bound on request and reply payloads held in memory: a size such as 256M.</summary>
    public string? MaxBufferedBytes { get; set; }

    /// <summary>"off", "on" (offered) or "require" (forced before any other option), as nbdkit's --tls.</summary>
    public string? Tls { get; set; }

    /// <summary>Folder with ca-cert.pem, server-cert.pem and server-key.pem.</summary>
    public string? TlsCertificates { get; set; }

    /// <summary>Require client certificates signed by ca-cert.pem.</summary>
    public string? TlsVerifyPeer { get; set; }

    /// <summary>Unix socket path of the control socket (inactivate/activate for migration), or null for none.</summary>
    public string? Control { get; set; }
    /// <summary>Default for every export's BackingRoot (see <see cref="ExportOptions.BackingRoot"/>).</summary>
    public string? BackingRoot { get; set; }

    public List<ExportOptions> Exports { get; set; } = [];
}
