using NbdQcow.HostIo.Native;

namespace NbdQcow.HostIo;

/// <summary>A host file call failed; carries the errno, the call and the file so callers can map it (ENOSPC, EIO, ...).</summary>
public sealed class HostIoException : IOException
{
    public HostIoException(string operation, string path, int errno, string? detail = null, Exception? inner = null)
        : base($"{operation} on {path} failed: {LinuxFileCalls.Describe(errno)}{(detail is null ? "" : "; " + detail)}", inner)
    {
        Operation = operation;
        FilePath = path;
        Errno = errno;
    }

    /// <summary>The failing call, e.g. "pwrite" or "fdatasync".</summary>
    public string Operation { get; }

    public string FilePath { get; }

    /// <summary>The Linux errno value (ENOSPC = 28, EIO = 5, ...).</summary>
    public int Errno { get; }

    public bool IsNoSpace => Errno == LinuxFileCalls.ENOSPC;

    /// <summary>
    /// The call never reached the kernel (an io_uring submission that was refused), so it changed nothing: no write
    /// started and no sync ran, and a failed "fdatasync" of this kind says nothing about data already written.
    /// </summary>
    public bool NeverStarted { get; init; }

    /// <summary>The path names a folder (EISDIR).</summary>
    public bool IsDirectory => Errno == LinuxFileCalls.EISDIR;
}
