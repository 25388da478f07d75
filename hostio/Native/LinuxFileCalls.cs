using System.Runtime.InteropServices;

namespace NbdQcow.HostIo.Native;

/// <summary>The few Linux file calls the BCL does not expose (open with O_DIRECT, fdatasync, fallocate, lseek, fadvise).</summary>
internal static partial class LinuxFileCalls
{
    public const int O_RDONLY = 0;
    public const int O_RDWR = 2;
    public const int O_CREAT = 0x40;
    public const int O_EXCL = 0x80;
    public const int O_CLOEXEC = 0x80000;
    public const int O_NONBLOCK = 0x800;

    public const int F_GETFL = 3;
    public const int F_SETFL = 4;

    // O_DIRECT differs by architecture (asm-generic vs arm/arm64 vs x86).
    public static int O_DIRECT => RuntimeInformation.ProcessArchitecture switch
    {
        Architecture.Arm64 or Architecture.Arm => 0x10000,
        _ => 0x4000,
    };

    public const int FALLOC_FL_KEEP_SIZE = 0x01;
    public const int FALLOC_FL_PUNCH_HOLE = 0x02;
    public const int FALLOC_FL_ZERO_RANGE = 0x10;

    public const int SEEK_DATA = 3;
    public const int SEEK_HOLE = 4;

    public const int POSIX_FADV_WILLNEED = 3;

    public const int EINTR = 4;
    public const int EIO = 5;
    public const int ENXIO = 6;
    public const int EAGAIN = 11;
    public const int EINVAL = 22;
    public const int ENOSPC = 28;
    public const int ENOSYS = 38;
    public const int EOPNOTSUPP = 95;

    [LibraryImport("libc", EntryPoint = "open", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    public static partial int Open(string path, int flags, int mode);

    /// <summary>fcntl(fd, cmd, int): F_GETFL / F_SETFL.</summary>
    [LibraryImport("libc", EntryPoint = "fcntl", SetLastError = true)]
    public static partial int FcntlFlags(int fd, int command, int argument);

    [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
    public static partial int Close(int fd);

    [LibraryImport("libc", EntryPoint = "fdatasync", SetLastError = true)]
    public static partial int FDataSync(int fd);

    [LibraryImport("libc", EntryPoint = "fsync", SetLastError = true)]
    public static partial int FSync(int fd);

    [LibraryImport("libc", EntryPoint = "fallocate", SetLastError = true)]
    public static partial int FAllocate(int fd, int mode, long offset, long length);

    [LibraryImport("libc", EntryPoint = "ftruncate", SetLastError = true)]
    public static partial int FTruncate(int fd, long length);

    [LibraryImport("libc", EntryPoint = "lseek", SetLastError = true)]
    public static partial long LSeek(int fd, long offset, int whence);

    /// <summary>Returns the error number directly (it does not set errno).</summary>
    [LibraryImport("libc", EntryPoint = "posix_fadvise")]
    public static partial int PosixFAdvise(int fd, long offset, long length, int advice);

    [LibraryImport("libc", EntryPoint = "strerror")]
    private static partial nint StrError(int errno);

    public static string Describe(int errno)
    {
        var text = Marshal.PtrToStringUTF8(StrError(errno));
        return $"{text ?? "error"} (errno {errno})";
    }
}
