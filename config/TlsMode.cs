namespace NbdQcow.Config;

/// <summary>Whether the server offers TLS (NBD_OPT_STARTTLS), with the names nbdkit uses for --tls.</summary>
public enum TlsMode
{
    /// <summary>No TLS: NBD_OPT_STARTTLS is answered NBD_REP_ERR_UNSUP (the spec's NOTLS mode).</summary>
    Off,

    /// <summary>TLS offered; a client may also continue in plain text (the spec's SELECTIVETLS, no TLS-only export).</summary>
    On,

    /// <summary>
    /// TLS required: before STARTTLS every option but STARTTLS and ABORT gets NBD_REP_ERR_TLS_REQD and
    /// NBD_OPT_EXPORT_NAME closes the connection (the spec's FORCEDTLS mode).
    /// </summary>
    Require,
}
