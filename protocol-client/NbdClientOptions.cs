namespace NbdQcow.Protocol.Client;

/// <summary>What <see cref="NbdClient"/> negotiates.</summary>
public sealed record NbdClientOptions
{
    public string ExportName { get; init; } = "";

    /// <summary>Use the old NBD_OPT_EXPORT_NAME path instead of NBD_OPT_GO (no structured replies or meta contexts then).</summary>
    public bool UseExportNameOption { get; init; }

    public bool StructuredReplies { get; init; } = true;

    /// <summary>Ask for 64-bit extended headers (implies structured replies).</summary>
    public bool ExtendedHeaders { get; init; }

    /// <summary>Select base:allocation with SET_META_CONTEXT so BLOCK_STATUS can be used.</summary>
    public bool BaseAllocation { get; init; } = true;

    /// <summary>When set, send NBD_OPT_STARTTLS first and negotiate everything else over TLS with these options.</summary>
    public System.Net.Security.SslClientAuthenticationOptions? Tls { get; init; }
}
