using NbdQcow.Image;
using NbdQcow.Protocol;

namespace NbdQcow.Server.Nbd;

/// <summary>Maps block device error classes to the errno values NBD puts on the wire.</summary>
public static class NbdErrnoMapping
{
    public static NbdErrno ToErrno(BlockError error) => error switch
    {
        BlockError.Io => NbdErrno.Io,
        BlockError.Permission => NbdErrno.PermissionDenied,
        BlockError.NoSpace => NbdErrno.NoSpace,
        BlockError.Invalid => NbdErrno.InvalidArgument,
        BlockError.NotSupported => NbdErrno.NotSupported,
        BlockError.Overflow => NbdErrno.Overflow,
        BlockError.Shutdown => NbdErrno.Shutdown,
        _ => NbdErrno.Io,
    };
}
