using System.Runtime.InteropServices;

namespace NbdQcow.HostIo.Native;

/// <summary>
/// Open file description locks (fcntl F_OFD_SETLK / F_OFD_GETLK), the kind qemu's file-posix driver takes on image
/// files, and statx for the device and inode that /proc lists lock holders by.
/// </summary>
internal static partial class LinuxFileCalls
{
    public const int F_OFD_GETLK = 36;
    public const int F_OFD_SETLK = 37;

    public const short F_RDLCK = 0;
    public const short F_WRLCK = 1;
    public const short F_UNLCK = 2;

    public const int SEEK_SET = 0;

    public const int EACCES = 13;

    /// <summary>
    /// struct flock of 64-bit Linux (x86_64 and arm64 share the generic layout): l_type, l_whence, then the 64-bit
    /// l_start and l_len at offsets 8 and 16, l_pid at 24.
    /// </summary>
#pragma warning disable CS0649 // filled in by the kernel
    [StructLayout(LayoutKind.Sequential)]
    public struct FileLock
    {
        public short Type;
        public short Whence;
        public long Start;
        public long Length;
        public int ProcessId;
    }

    /// <summary>fcntl(fd, cmd, struct flock *): the third argument is a pointer, passed like a fixed one on Linux ABIs.</summary>
    [LibraryImport("libc", EntryPoint = "fcntl", SetLastError = true)]
    public static partial int FcntlLock(int fd, int command, ref FileLock fileLock);

    public const int AT_FDCWD = -100;
    public const uint STATX_INO = 0x100;

    /// <summary>The fields of struct statx (a fixed, architecture-independent layout of 256 bytes) used here.</summary>
    [StructLayout(LayoutKind.Explicit, Size = 256)]
    public struct StatXBuffer
    {
        [FieldOffset(0x1c)] public ushort Mode;
        [FieldOffset(0x20)] public ulong Inode;
        [FieldOffset(0x88)] public uint DeviceMajor;
        [FieldOffset(0x8c)] public uint DeviceMinor;
    }
#pragma warning restore CS0649

    [LibraryImport("libc", EntryPoint = "statx", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    public static partial int StatX(int directoryFd, string path, int flags, uint mask, out StatXBuffer result);
}
