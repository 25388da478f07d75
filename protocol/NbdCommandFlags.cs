namespace NbdQcow.Protocol;

/// <summary>Request flags (16 bits).</summary>
[Flags]
public enum NbdCommandFlags : ushort
{
    None = 0,
    Fua = 1 << 0,
    NoHole = 1 << 1,
    /// <summary>Don't fragment: a structured READ reply must carry all data in one chunk.</summary>
    DontFragment = 1 << 2,
    /// <summary>BLOCK_STATUS: answer with one extent only.</summary>
    ReqOne = 1 << 3,
    FastZero = 1 << 4,
    /// <summary>Extended headers: the length field is a payload length (BLOCK_STATUS with payload).</summary>
    PayloadLength = 1 << 5,
}
