namespace NbdQcow.Protocol;

/// <summary>Structured reply chunk flags.</summary>
[Flags]
public enum NbdReplyFlags : ushort
{
    None = 0,
    /// <summary>Last chunk of the reply to this cookie.</summary>
    Done = 1 << 0,
}
