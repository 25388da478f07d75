namespace NbdQcow.Protocol;

/// <summary>Outcome of an incremental parse over a buffer that may hold only part of a message.</summary>
public enum NbdParseStatus
{
    /// <summary>Not enough bytes yet; nothing consumed.</summary>
    NeedMoreData,
    Complete,
    /// <summary>The message does not start with the expected magic: the stream is out of sync.</summary>
    BadMagic,
    /// <summary>Well framed but malformed (lengths that disagree, strings too long).</summary>
    Invalid,
}
