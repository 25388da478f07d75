namespace NbdQcow.Image;

/// <summary>Error classes a block device reports; the server maps them to NBD errno values.</summary>
public enum BlockError
{
    Io,
    Permission,
    NoSpace,
    Invalid,
    NotSupported,
    Overflow,
    Shutdown,
}
