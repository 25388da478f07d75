namespace NbdQcow.HostIo;

/// <summary>How an export's data path does host I/O (qemu-nbd's --aio spellings: threads, io_uring).</summary>
public enum AioEngine
{
    /// <summary>Plain positional libc calls (pread/pwrite/fdatasync) on the calling thread.</summary>
    Threads,

    /// <summary>Reads, writes and fdatasync submitted to an io_uring ring, completed by a reaper thread.</summary>
    IoUring,
}
