namespace NbdQcow.Protocol;

/// <summary>Structured reply chunk types; errors have bit 15 set.</summary>
public enum NbdReplyType : ushort
{
    None = 0,
    OffsetData = 1,
    OffsetHole = 2,
    BlockStatus = 5,
    BlockStatusExtended = 6,
    Error = 0x8000 | 1,
    ErrorOffset = 0x8000 | 2,
}
