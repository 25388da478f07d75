namespace NbdQcow.Protocol;

/// <summary>Error values on the wire (Linux errno numbers, fixed by the spec).</summary>
public enum NbdErrno : uint
{
    None = 0,
    PermissionDenied = 1,      // EPERM
    Io = 5,                    // EIO
    OutOfMemory = 12,          // ENOMEM
    InvalidArgument = 22,      // EINVAL
    NoSpace = 28,              // ENOSPC
    Overflow = 75,             // EOVERFLOW
    NotSupported = 95,         // ENOTSUP
    Shutdown = 108,            // ESHUTDOWN
}
