using NbdQcow.HostIo;

namespace NbdQcow.Image;

/// <summary>Maps host file failures to the block error classes the server turns into NBD errors.</summary>
public static class HostIoErrors
{
    public static BlockDeviceException ToBlockDeviceException(IOException e)
    {
        if (e is BlockDeviceException already) return already;
        var error = e is HostIoException host
            ? host.Errno switch
            {
                28 or 122 => BlockError.NoSpace,          // ENOSPC, EDQUOT
                1 or 9 or 13 or 30 => BlockError.Permission, // EPERM, EBADF, EACCES, EROFS
                22 => BlockError.Invalid,                  // EINVAL
                95 => BlockError.NotSupported,             // EOPNOTSUPP
                27 or 75 => BlockError.Overflow,           // EFBIG, EOVERFLOW
                _ => BlockError.Io,
            }
            : BlockError.Io;
        return new BlockDeviceException(error, e.Message, e);
    }
}
