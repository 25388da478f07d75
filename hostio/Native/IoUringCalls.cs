using System.Runtime.InteropServices;

namespace NbdQcow.HostIo.Native;

/// <summary>
/// The io_uring system calls and the kernel ABI structures they share with user space (linux/io_uring.h),
/// called through libc's syscall(2): no liburing, no native build step. The syscall numbers are the same on
/// every architecture since Linux 5.1.
/// </summary>
internal static unsafe partial class IoUringCalls
{
    public const long SysIoUringSetup = 425;
    public const long SysIoUringEnter = 426;

    public const long OffSqRing = 0;
    public const long OffCqRing = 0x8000000;
    public const long OffSqes = 0x10000000;

    public const uint SetupCqSize = 1u << 3;
    public const uint SetupClamp = 1u << 4;

    public const uint FeatSingleMmap = 1u << 0;
    public const uint FeatNoDrop = 1u << 1;
    /// <summary>Present from Linux 5.6, the release that added IORING_OP_READ/WRITE, so it doubles as their probe.</summary>
    public const uint FeatRwCurPos = 1u << 3;

    public const uint EnterGetEvents = 1u << 0;

    public const byte OpNop = 0;
    public const byte OpFsync = 3;
    public const byte OpRead = 22;
    public const byte OpWrite = 23;

    public const uint FsyncDataSync = 1u << 0;

    public const int PROT_READ = 1;
    public const int PROT_WRITE = 2;
    public const int MAP_SHARED = 1;
    public const int MAP_POPULATE = 0x8000;

    public const int EPERM = 1;
    public const int ENOMEM = 12;
    public const int EBUSY = 16;
    public const int ECANCELED = 125;

    [StructLayout(LayoutKind.Sequential)]
    public struct SqRingOffsets
    {
        public uint Head, Tail, RingMask, RingEntries, Flags, Dropped, Array, Resv1;
        public ulong UserAddr;
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct CqRingOffsets
    {
        public uint Head, Tail, RingMask, RingEntries, Overflow, Cqes, Flags, Resv1;
        public ulong UserAddr;
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct Params
    {
        public uint SqEntries, CqEntries, Flags, SqThreadCpu, SqThreadIdle, Features, WqFd, Resv0, Resv1, Resv2;
        public SqRingOffsets SqOff;
        public CqRingOffsets CqOff;
    }

    /// <summary>struct io_uring_sqe (64 bytes), the fields a read, write, fsync or nop uses.</summary>
    [StructLayout(LayoutKind.Explicit, Size = 64)]
    public struct SubmissionEntry
    {
        [FieldOffset(0)] public byte Opcode;
        [FieldOffset(1)] public byte Flags;
        [FieldOffset(2)] public ushort IoPriority;
        [FieldOffset(4)] public int Fd;
        [FieldOffset(8)] public ulong Offset;
        [FieldOffset(16)] public ulong Address;
        [FieldOffset(24)] public uint Length;
        [FieldOffset(28)] public uint OpFlags;
        [FieldOffset(32)] public ulong UserData;
        [FieldOffset(40)] public ulong Rest0;
        [FieldOffset(48)] public ulong Rest1;
        [FieldOffset(56)] public ulong Rest2;
    }

    /// <summary>struct io_uring_cqe (16 bytes).</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct CompletionEntry
    {
        public ulong UserData;
        public int Result;
        public uint Flags;
    }

    [LibraryImport("libc", EntryPoint = "syscall", SetLastError = true)]
    private static partial long Syscall(long number, long a1, long a2, long a3, long a4, long a5, long a6);

    [LibraryImport("libc", EntryPoint = "mmap", SetLastError = true)]
    public static partial nint Mmap(nint address, nuint length, int protection, int flags, int fd, long offset);

    [LibraryImport("libc", EntryPoint = "munmap", SetLastError = true)]
    public static partial int Munmap(nint address, nuint length);

    /// <summary>io_uring_setup(2): the ring's descriptor, or -1 with errno set.</summary>
    public static int Setup(uint entries, Params* parameters) =>
        (int)Syscall(SysIoUringSetup, entries, (long)parameters, 0, 0, 0, 0);

    /// <summary>io_uring_enter(2): how many entries were consumed, or -1 with errno set.</summary>
    public static int Enter(int fd, uint toSubmit, uint minComplete, uint flags) =>
        (int)Syscall(SysIoUringEnter, fd, toSubmit, minComplete, flags, 0, 0);
}
