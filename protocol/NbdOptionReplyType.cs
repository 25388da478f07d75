namespace NbdQcow.Protocol;

/// <summary>Option reply types; errors have bit 31 set.</summary>
public enum NbdOptionReplyType : uint
{
    Ack = 1,
    Server = 2,
    Info = 3,
    MetaContext = 4,
    ErrUnsupported = 0x80000000u | 1,
    ErrPolicy = 0x80000000u | 2,
    ErrInvalid = 0x80000000u | 3,
    ErrPlatform = 0x80000000u | 4,
    ErrTlsRequired = 0x80000000u | 5,
    ErrUnknown = 0x80000000u | 6,
    ErrShutdown = 0x80000000u | 7,
    ErrBlockSizeRequired = 0x80000000u | 8,
    ErrTooBig = 0x80000000u | 9,
    ErrExtendedHeaderRequired = 0x80000000u | 10,
}
