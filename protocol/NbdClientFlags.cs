namespace NbdQcow.Protocol;

/// <summary>Client flags sent in reply to the server's handshake flags (32 bits).</summary>
[Flags]
public enum NbdClientFlags : uint
{
    None = 0,
    FixedNewstyle = 1 << 0,
    NoZeroes = 1 << 1,
}
