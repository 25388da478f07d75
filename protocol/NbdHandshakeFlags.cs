namespace NbdQcow.Protocol;

/// <summary>Global handshake flags the server sends after IHAVEOPT (16 bits).</summary>
[Flags]
public enum NbdHandshakeFlags : ushort
{
    None = 0,
    FixedNewstyle = 1 << 0,
    NoZeroes = 1 << 1,
}
