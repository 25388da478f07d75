namespace NbdQcow.Protocol;

/// <summary>Which reply headers a connection uses, fixed by negotiation.</summary>
public enum NbdReplyStyle
{
    /// <summary>Simple replies only (no STRUCTURED_REPLY negotiated).</summary>
    Simple,
    /// <summary>Structured replies (20-byte chunk header); simple replies still allowed for non-read commands.</summary>
    Structured,
    /// <summary>Extended headers: 32-byte requests and 32-byte reply headers for every reply.</summary>
    Extended,
}
