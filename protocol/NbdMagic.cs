namespace NbdQcow.Protocol;

/// <summary>Magic numbers of the NBD wire protocol (doc/proto.md), all sent big-endian.</summary>
public static class NbdMagic
{
    /// <summary>"NBDMAGIC": first 8 bytes the server sends.</summary>
    public const ulong InitPassword = 0x4e42444d41474943;

    /// <summary>"IHAVEOPT": newstyle negotiation magic, also prefixes every client option.</summary>
    public const ulong IHaveOpt = 0x49484156454F5054;

    public const ulong OptionReply = 0x0003e889045565a9;
    public const uint Request = 0x25609513;
    public const uint ExtendedRequest = 0x21e41c71;
    public const uint SimpleReply = 0x67446698;
    public const uint StructuredReply = 0x668e33ef;
    public const uint ExtendedReply = 0x6e8a278c;
}
