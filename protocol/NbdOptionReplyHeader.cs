namespace NbdQcow.Protocol;

/// <summary>Header of one option reply from the server (payload of <see cref="Length"/> bytes follows).</summary>
public readonly record struct NbdOptionReplyHeader(NbdOption Option, NbdOptionReplyType Type, uint Length)
{
    public bool IsError => ((uint)Type & 0x80000000u) != 0;
}
