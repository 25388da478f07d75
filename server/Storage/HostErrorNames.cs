using NbdQcow.HostIo;
using NbdQcow.Image;

namespace NbdQcow.Server.Storage;

/// <summary>Short names for host errors in log lines and status ("ENOSPC", "EIO", ...).</summary>
internal static class HostErrorNames
{
    public static string Describe(BlockDeviceException error) => error.InnerException is HostIoException host
        ? $"{Name(host.Errno)} from {host.Operation}"
        : error.Error.ToString();

    public static string Name(int errno) => errno switch
    {
        5 => "EIO",
        28 => "ENOSPC",
        122 => "EDQUOT",
        30 => "EROFS",
        13 => "EACCES",
        1 => "EPERM",
        27 => "EFBIG",
        _ => $"errno {errno}",
    };

    /// <summary>True when a host call failed (as opposed to a refused request or a damaged image).</summary>
    public static bool IsHostError(BlockDeviceException error) => error.InnerException is HostIoException;

    /// <summary>A failed (or, after one failed, refused) fdatasync: never retried, since no later sync can be trusted.</summary>
    public static bool IsSyncFailure(BlockDeviceException error) => error.InnerException is HostIoException { Operation: "fdatasync" };

    /// <summary>Out of space: ENOSPC or EDQUOT.</summary>
    public static bool IsNoSpace(BlockDeviceException error) => error.Error == BlockError.NoSpace && IsHostError(error);
}
