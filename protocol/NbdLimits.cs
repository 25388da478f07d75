namespace NbdQcow.Protocol;

/// <summary>Size limits this implementation enforces.</summary>
public static class NbdLimits
{
    /// <summary>Largest READ/WRITE payload (the spec's customary maximum, advertised in BLOCK_SIZE).</summary>
    public const int MaxPayload = 32 * 1024 * 1024;

    /// <summary>Longest string (export name, description, message) the spec allows.</summary>
    public const int MaxString = 4096;

    /// <summary>Largest option payload accepted during negotiation; bigger ones get NBD_REP_ERR_TOO_BIG.</summary>
    public const int MaxOptionPayload = 64 * 1024;

    /// <summary>Size of a compact request header.</summary>
    public const int RequestHeaderSize = 28;

    public const int ExtendedRequestHeaderSize = 32;
    public const int SimpleReplyHeaderSize = 16;
    public const int StructuredReplyHeaderSize = 20;
    public const int ExtendedReplyHeaderSize = 32;
    public const int OptionHeaderSize = 16;
    public const int OptionReplyHeaderSize = 20;

    /// <summary>Context id the server assigns to base:allocation.</summary>
    public const uint BaseAllocationContextId = 1;

    public const string BaseAllocation = "base:allocation";
}
