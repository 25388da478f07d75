namespace NbdQcow.Protocol;

/// <summary>
/// A reply header as the client sees it. Simple replies carry <see cref="Error"/> and no payload length
/// (a READ's data follows implicitly); structured and extended chunks carry flags, type and payload length.
/// </summary>
public readonly record struct NbdReplyHeader(
    NbdReplyStyle Style,
    NbdErrno Error,
    NbdReplyFlags Flags,
    NbdReplyType Type,
    ulong Cookie,
    ulong Offset,
    ulong Length)
{
    /// <summary>True when no further chunk for this cookie follows.</summary>
    public bool IsDone => Style == NbdReplyStyle.Simple || (Flags & NbdReplyFlags.Done) != 0;
}
