using System.Runtime.InteropServices;

namespace NbdQcow.HostIo.Native;

internal static partial class LinuxFileCalls
{
    public const int PATH_MAX = 4096;
    public const uint STATX_TYPE = 0x1;
    public const ushort S_IFMT = 0xf000;
    public const ushort S_IFREG = 0x8000;
    public const ushort S_IFDIR = 0x4000;
    public const ushort S_IFIFO = 0x1000;
    public const ushort S_IFSOCK = 0xc000;
    public const int AT_EMPTY_PATH = 0x1000;

    /// <summary>realpath(3) into a caller's PATH_MAX buffer; 0 on failure (errno set).</summary>
    [LibraryImport("libc", EntryPoint = "realpath", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    public static partial nint RealPath(string path, [Out] byte[] resolved);
}
