using System.Runtime.InteropServices;
using NbdQcow.HostIo.Native;

namespace NbdQcow.HostIo;

/// <summary>
/// qemu-compatible image locking (block/file-posix.c of qemu 7.2): shared open file description locks (F_OFD_SETLK,
/// F_RDLCK) on single bytes of the image file — byte 100 + bit for each permission held, byte 200 + bit for each
/// permission not shared — and a test (F_OFD_GETLK with F_WRLCK) of the opposite bytes: a permission wanted is refused
/// while anyone locks its "not shared" byte, and a permission not shared is refused while anyone holds it.
/// The locks live on a file description of their own (opened read-only), so they do not depend on how the image's
/// I/O is done; they vanish when it is closed, including when the process dies.
/// </summary>
public sealed class ImageLock : IDisposable
{
    private const int PermissionBase = 100;
    private const int SharedBase = 200;
    private const int PermissionBits = 4;

    private readonly int _fd;
    private bool _disposed;

    private ImageLock(string path, int fd, ImageLockSet set)
    {
        Path = path;
        _fd = fd;
        Set = set;
    }

    /// <summary>Full path of the locked file.</summary>
    public string Path { get; }

    /// <summary>The permissions currently held and not shared.</summary>
    public ImageLockSet Set { get; private set; }

    /// <summary>
    /// Takes <paramref name="set"/> on <paramref name="path"/>, or throws <see cref="ImageLockConflictException"/>
    /// (having taken nothing) when another user's locks conflict.
    /// </summary>
    public static ImageLock Acquire(string path, ImageLockSet set)
    {
        var fullPath = System.IO.Path.GetFullPath(path);
        int fd;
        int errno;
        do
        {
            // O_NONBLOCK: this descriptor only holds locks, and a FIFO must not hold the open until a writer comes.
            fd = LinuxFileCalls.Open(fullPath, LinuxFileCalls.O_RDONLY | LinuxFileCalls.O_CLOEXEC | LinuxFileCalls.O_NONBLOCK, 0);
            errno = fd < 0 ? Marshal.GetLastPInvokeError() : 0;
        } while (fd < 0 && errno == LinuxFileCalls.EINTR);
        if (fd < 0)
        {
            if (errno == 2) throw new FileNotFoundException($"open on {fullPath} failed: {LinuxFileCalls.Describe(errno)}", fullPath);
            throw new HostIoException("open (for image locking)", fullPath, errno);
        }
        var imageLock = new ImageLock(fullPath, fd, new ImageLockSet(ImageLockPermissions.None, ImageLockPermissions.None));
        try
        {
            imageLock.Change(set);
            return imageLock;
        }
        catch
        {
            imageLock.Dispose();
            throw;
        }
    }

    /// <summary>Takes the set for a policy, or returns null when locking is off.</summary>
    public static ImageLock? Acquire(string path, ImageLocking locking, bool readOnly) =>
        ImageLockSet.For(locking, readOnly) is { } set ? Acquire(path, set) : null;

    /// <summary>
    /// Moves to <paramref name="set"/> as qemu changes permissions: lock the union of old and new bytes, test the new
    /// set against others, then drop what is no longer needed. On a conflict the old set stays and nothing else changes.
    /// </summary>
    public void Change(ImageLockSet set)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var old = Set;
        try
        {
            Apply(old.Held | set.Held, old.Unshared | set.Unshared);
            Check(set);
        }
        catch
        {
            Apply(old.Held, old.Unshared, unlockOthers: true);
            throw;
        }
        Apply(set.Held, set.Unshared, unlockOthers: true);
        Set = set;
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        LinuxFileCalls.Close(_fd);
    }

    private void Apply(ImageLockPermissions held, ImageLockPermissions unshared, bool unlockOthers = false)
    {
        for (var bit = 0; bit < PermissionBits; bit++)
        {
            var permission = (ImageLockPermissions)(1 << bit);
            SetByte(PermissionBase + bit, (held & permission) != 0, unlockOthers);
            SetByte(SharedBase + bit, (unshared & permission) != 0, unlockOthers);
        }
    }

    private void SetByte(int offset, bool locked, bool unlockOthers)
    {
        if (!locked && !unlockOthers) return;
        var request = new LinuxFileCalls.FileLock
        {
            Type = locked ? LinuxFileCalls.F_RDLCK : LinuxFileCalls.F_UNLCK,
            Whence = LinuxFileCalls.SEEK_SET,
            Start = offset,
            Length = 1,
        };
        int errno = FcntlLock(LinuxFileCalls.F_OFD_SETLK, ref request);
        if (errno == 0) return;
        if (errno is LinuxFileCalls.EAGAIN or LinuxFileCalls.EACCES)
            throw Conflict($"Failed to lock byte {offset}", offset);
        throw new HostIoException($"fcntl(F_OFD_SETLK, byte {offset})", Path, errno);
    }

    private void Check(ImageLockSet set)
    {
        for (var bit = 0; bit < PermissionBits; bit++)
        {
            var permission = (ImageLockPermissions)(1 << bit);
            if ((set.Held & permission) != 0 && IsLockedByOthers(SharedBase + bit))
                throw Conflict($"Failed to get \"{Name(permission)}\" lock", SharedBase + bit);
        }
        for (var bit = 0; bit < PermissionBits; bit++)
        {
            var permission = (ImageLockPermissions)(1 << bit);
            if ((set.Unshared & permission) != 0 && IsLockedByOthers(PermissionBase + bit))
                throw Conflict($"Failed to get shared \"{Name(permission)}\" lock", PermissionBase + bit);
        }
    }

    /// <summary>F_OFD_GETLK with a write lock: reports any lock on the byte held through another file description.</summary>
    private bool IsLockedByOthers(int offset)
    {
        var probe = new LinuxFileCalls.FileLock
        {
            Type = LinuxFileCalls.F_WRLCK,
            Whence = LinuxFileCalls.SEEK_SET,
            Start = offset,
            Length = 1,
        };
        int errno = FcntlLock(LinuxFileCalls.F_OFD_GETLK, ref probe);
        if (errno != 0) throw new HostIoException($"fcntl(F_OFD_GETLK, byte {offset})", Path, errno);
        return probe.Type != LinuxFileCalls.F_UNLCK;
    }

    /// <summary>One fcntl lock call, retried when a signal interrupts it; the errno, or 0 on success.</summary>
    private int FcntlLock(int command, ref LinuxFileCalls.FileLock request)
    {
        while (true)
        {
            if (LinuxFileCalls.FcntlLock(_fd, command, ref request) == 0) return 0;
            int errno = Marshal.GetLastPInvokeError();
            if (errno != LinuxFileCalls.EINTR) return errno;
        }
    }

    private ImageLockConflictException Conflict(string failure, int offset)
    {
        var holders = ImageLockHolders.Describe(Path, offset, _fd);
        return new ImageLockConflictException(Path,
            $"{Path}: {failure}: the image is in use by another process ({holders}). " +
            "Is another process (qemu or nbdqcow) using the image? Stop it first (or inactivate it, for a migration); " +
            "to only read the image while it is in use, use --force-share (qemu-img/qemu-io: -U).");
    }

    /// <summary>qemu's names for the permissions (bdrv_perm_names).</summary>
    private static string Name(ImageLockPermissions permission) => permission switch
    {
        ImageLockPermissions.ConsistentRead => "consistent read",
        ImageLockPermissions.Write => "write",
        ImageLockPermissions.WriteUnchanged => "write unchanged",
        ImageLockPermissions.Resize => "resize",
        _ => permission.ToString(),
    };
}
