using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;
using NbdQcow.HostIo.Native;

namespace NbdQcow.HostIo;

/// <summary>
/// A Linux host file opened with open(2) (O_CLOEXEC, and O_DIRECT for cache modes none/directsync),
/// doing positional I/O through RandomAccess (pread/pwrite), fdatasync, fallocate and lseek only — no
/// mmap — so strace and write-logging tests see every write and barrier. This is the threads engine
/// (<see cref="AioEngine.Threads"/>): its asynchronous members are the synchronous calls.
/// With O_DIRECT every transfer goes through aligned pooled buffers; unaligned requests read-modify-write
/// their partial edge blocks under a striped lock, so writes to different bytes of one block never clobber
/// each other.
/// </summary>
/// <remarks>
/// Transient faults: EINTR is retried in a plain loop (RandomAccess already retries it for pread/pwrite).
/// No Polly pipeline here on purpose: the I/O takes spans, which no delegate can capture, and the one
/// fault worth retrying blindly is EINTR — retrying fdatasync after EIO is wrong (the kernel clears the
/// error, so a retry "succeeds" while data was lost), and EAGAIN does not occur on regular files.
/// </remarks>
public sealed unsafe class HostFile : IHostFile
{
    /// <summary>
    /// O_DIRECT alignment for offsets, lengths and buffer addresses. 4096 is valid on 512-byte and 4Kn
    /// devices alike, so the logical block size need not be queried.
    /// </summary>
    public const int DirectAlignment = 4096;

    /// <summary>Largest transfer done through one pooled bounce buffer.</summary>
    public const int DirectChunkSize = 1 << 20;

    private const int EdgeLockStripes = 64;
    internal static readonly AlignedBufferPool BounceBuffers = new(DirectChunkSize, DirectAlignment, maxPooled: 32);

    private readonly SafeFileHandle _handle;
    private readonly int _fd;
    private readonly object[] _edgeLocks;
    private readonly object _extendLock = new();

    private HostFile(string path, SafeFileHandle handle, int fd, bool direct, bool readOnly)
    {
        Path = path;
        _handle = handle;
        _fd = fd;
        IsDirect = direct;
        IsReadOnly = readOnly;
        _edgeLocks = new object[direct ? EdgeLockStripes : 0];
        for (var i = 0; i < _edgeLocks.Length; i++) _edgeLocks[i] = new object();
    }

    /// <summary>Opens a host file; matches <see cref="HostFileFactory"/>.</summary>
    public static HostFile Open(string path, HostFileOptions options)
    {
        var fullPath = System.IO.Path.GetFullPath(path);
        // O_NONBLOCK only for the open itself: opening a FIFO for reading would otherwise wait for a writer forever,
        // before the type check below could refuse it. It is cleared again once the file is known to be no FIFO.
        var flags = (options.ReadOnly ? LinuxFileCalls.O_RDONLY : LinuxFileCalls.O_RDWR) | LinuxFileCalls.O_CLOEXEC | LinuxFileCalls.O_NONBLOCK;
        if (options.Direct) flags |= LinuxFileCalls.O_DIRECT;
        if (options.Create) flags |= LinuxFileCalls.O_CREAT;
        int fd;
        int errno;
        do
        {
            fd = LinuxFileCalls.Open(fullPath, flags, 420 /* 0644 */);
            errno = fd < 0 ? Marshal.GetLastPInvokeError() : 0;
        } while (fd < 0 && errno == LinuxFileCalls.EINTR);
        if (fd < 0)
        {
            if (errno == LinuxFileCalls.EINVAL && options.Direct)
            {
                throw new HostIoException("open(O_DIRECT)", fullPath, errno,
                    $"the {FileSystemTypeOf(fullPath)} file system holding it does not support O_DIRECT; " +
                    "use --cache writeback or writethrough, or move the image to a file system that does");
            }
            if (errno == 2) throw new FileNotFoundException($"open on {fullPath} failed: {LinuxFileCalls.Describe(errno)}", fullPath);
            throw new HostIoException("open", fullPath, errno);
        }
        var handle = new SafeFileHandle(fd, ownsHandle: true);
        try
        {
            RefuseNonFile(fullPath, fd);
            int status = LinuxFileCalls.FcntlFlags(fd, LinuxFileCalls.F_GETFL, 0);
            if (status < 0 || LinuxFileCalls.FcntlFlags(fd, LinuxFileCalls.F_SETFL, status & ~LinuxFileCalls.O_NONBLOCK) < 0)
                throw new HostIoException("fcntl", fullPath, Marshal.GetLastPInvokeError());
        }
        catch
        {
            handle.Dispose();
            throw;
        }
        return new HostFile(fullPath, handle, fd, options.Direct, options.ReadOnly);
    }

    /// <summary>
    /// Refuses a FIFO, socket or folder: none has positional I/O, and reading a FIFO blocks until someone writes to
    /// it, so an image path naming one would hang the open or the first read instead of failing.
    /// </summary>
    private static void RefuseNonFile(string path, int fd)
    {
        if (LinuxFileCalls.StatX(fd, "", LinuxFileCalls.AT_EMPTY_PATH, LinuxFileCalls.STATX_TYPE, out var status) != 0)
            throw new HostIoException("statx", path, Marshal.GetLastPInvokeError());
        string? kind = (status.Mode & LinuxFileCalls.S_IFMT) switch
        {
            LinuxFileCalls.S_IFIFO => "a FIFO",
            LinuxFileCalls.S_IFSOCK => "a socket",
            LinuxFileCalls.S_IFDIR => "a folder",
            _ => null,
        };
        if (kind is not null)
            throw new HostIoException("open", path, LinuxFileCalls.EINVAL, $"it is {kind}, not a file: an image must be a regular file or a block device");
    }

    public string Path { get; }

    /// <summary>The open descriptor, for an engine that submits I/O on it (io_uring).</summary>
    internal int Descriptor => _fd;

    public bool IsDirect { get; }

    public bool IsReadOnly { get; }

    public long Length
    {
        get
        {
            try { return RandomAccess.GetLength(_handle); }
            catch (IOException e) when (e is not HostIoException) { throw Translate("fstat", e); }
        }
    }

    public void Read(long offset, Span<byte> buffer)
    {
        if (buffer.IsEmpty) return;
        if (!IsDirect || IsAligned(offset, buffer)) { ReadFully(offset, buffer); return; }
        var bounce = BounceBuffers.Rent();
        try
        {
            var position = offset;
            var done = 0;
            while (done < buffer.Length)
            {
                var alignedStart = AlignDown(position);
                var head = (int)(position - alignedStart);
                var count = Math.Min(buffer.Length - done, DirectChunkSize - head);
                var alignedLength = (int)(AlignUp(position + count) - alignedStart);
                var window = BounceBuffers.AsSpan(bounce, alignedLength);
                ReadFully(alignedStart, window);
                window.Slice(head, count).CopyTo(buffer.Slice(done, count));
                done += count;
                position += count;
            }
        }
        finally
        {
            BounceBuffers.Return(bounce);
        }
    }

    public void Write(long offset, ReadOnlySpan<byte> data)
    {
        ThrowIfReadOnly("pwrite");
        if (data.IsEmpty) return;
        if (!IsDirect || IsAligned(offset, data)) { WriteFully(offset, data); return; }
        var bounce = BounceBuffers.Rent();
        try
        {
            var position = offset;
            var done = 0;
            while (done < data.Length)
            {
                var alignedStart = AlignDown(position);
                var head = (int)(position - alignedStart);
                var count = Math.Min(data.Length - done, DirectChunkSize - head);
                WriteDirectChunk(bounce, position, head, data.Slice(done, count));
                done += count;
                position += count;
            }
        }
        finally
        {
            BounceBuffers.Return(bounce);
        }
    }

    /// <summary>One aligned window: read the partial edge blocks, overlay the data, write the window.</summary>
    private void WriteDirectChunk(nint bounce, long position, int head, ReadOnlySpan<byte> data)
    {
        var alignedStart = position - head;
        var end = position + data.Length;
        var alignedEnd = AlignUp(end);
        var alignedLength = (int)(alignedEnd - alignedStart);
        var window = BounceBuffers.AsSpan(bounce, alignedLength);
        var firstBlock = alignedStart / DirectAlignment;
        var lastBlock = (alignedEnd - 1) / DirectAlignment;
        var tailPartial = end % DirectAlignment != 0;
        var headPartial = head != 0 || (firstBlock == lastBlock && tailPartial);
        if (!headPartial && !tailPartial)
        {
            data.CopyTo(window);
            WriteFully(alignedStart, window);
            return;
        }

        // Lock the stripes of the partial edge blocks (in index order, so two writers never deadlock).
        var headLock = headPartial ? _edgeLocks[firstBlock % EdgeLockStripes] : null;
        var tailLock = tailPartial ? _edgeLocks[lastBlock % EdgeLockStripes] : null;
        if (headLock is not null && tailLock is not null && ReferenceEquals(headLock, tailLock)) tailLock = null;
        if (headLock is not null && tailLock is not null &&
            firstBlock % EdgeLockStripes > lastBlock % EdgeLockStripes) (headLock, tailLock) = (tailLock, headLock);
        // An unaligned write that extends the file would leave it longer than asked; serialise those and trim.
        var extending = alignedEnd > Length;
        var lockTaken1 = false;
        var lockTaken2 = false;
        var extendTaken = false;
        try
        {
            if (extending) Monitor.Enter(_extendLock, ref extendTaken);
            if (headLock is not null) Monitor.Enter(headLock, ref lockTaken1);
            if (tailLock is not null) Monitor.Enter(tailLock, ref lockTaken2);
            var lengthBefore = extending ? Length : 0;
            if (headPartial) ReadFully(alignedStart, window[..DirectAlignment]);
            if (tailPartial && (lastBlock != firstBlock || !headPartial))
                ReadFully(alignedEnd - DirectAlignment, window[(alignedLength - DirectAlignment)..]);
            data.CopyTo(window[head..]);
            WriteFully(alignedStart, window);
            if (extending)
            {
                var wanted = Math.Max(lengthBefore, end);
                if (Length > wanted) SetLength(wanted);
            }
        }
        finally
        {
            if (lockTaken2) Monitor.Exit(tailLock!);
            if (lockTaken1) Monitor.Exit(headLock!);
            if (extendTaken) Monitor.Exit(_extendLock);
        }
    }

    public void Flush()
    {
        int result;
        int errno;
        do
        {
            result = LinuxFileCalls.FDataSync(_fd);
            errno = result < 0 ? Marshal.GetLastPInvokeError() : 0;
        } while (result < 0 && errno == LinuxFileCalls.EINTR);
        if (result < 0) throw new HostIoException("fdatasync", Path, errno);
    }

    public void SetLength(long length)
    {
        ThrowIfReadOnly("ftruncate");
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        int result;
        int errno;
        do
        {
            result = LinuxFileCalls.FTruncate(_fd, length);
            errno = result < 0 ? Marshal.GetLastPInvokeError() : 0;
        } while (result < 0 && errno == LinuxFileCalls.EINTR);
        if (result < 0) throw new HostIoException("ftruncate", Path, errno);
    }

    public bool TryPunchHole(long offset, long length)
    {
        ThrowIfReadOnly("fallocate(PUNCH_HOLE)");
        return length == 0 || FAllocate("fallocate(PUNCH_HOLE)",
            LinuxFileCalls.FALLOC_FL_PUNCH_HOLE | LinuxFileCalls.FALLOC_FL_KEEP_SIZE, offset, length);
    }

    public bool TryZeroRange(long offset, long length)
    {
        ThrowIfReadOnly("fallocate(ZERO_RANGE)");
        if (length == 0) return true;
        return FAllocate("fallocate(ZERO_RANGE)", LinuxFileCalls.FALLOC_FL_ZERO_RANGE | LinuxFileCalls.FALLOC_FL_KEEP_SIZE, offset, length)
            || TryPunchHole(offset, length);
    }

    public bool TryAllocateZeroed(long offset, long length)
    {
        ThrowIfReadOnly("fallocate(ZERO_RANGE)");
        if (length == 0) return true;
        // Without KEEP_SIZE both calls grow the file to cover the range (tmpfs has no ZERO_RANGE, but punches).
        return FAllocate("fallocate(ZERO_RANGE)", LinuxFileCalls.FALLOC_FL_ZERO_RANGE, offset, length)
            || (TryPunchHole(offset, length) && FAllocate("fallocate", 0, offset, length));
    }

    public bool TryReserve(long offset, long length)
    {
        ThrowIfReadOnly("fallocate");
        return length == 0 || FAllocate("fallocate", 0, offset, length);
    }

    public long SeekData(long offset)
    {
        var length = Length;
        if (offset >= length) return length;
        var result = LinuxFileCalls.LSeek(_fd, offset, LinuxFileCalls.SEEK_DATA);
        if (result >= 0) return Math.Min(result, length);
        var errno = Marshal.GetLastPInvokeError();
        return errno switch
        {
            LinuxFileCalls.ENXIO => length,
            // No SEEK_DATA support: everything counts as data.
            LinuxFileCalls.EINVAL or LinuxFileCalls.EOPNOTSUPP => offset,
            _ => throw new HostIoException("lseek(SEEK_DATA)", Path, errno),
        };
    }

    public long SeekHole(long offset)
    {
        var length = Length;
        if (offset >= length) return length;
        var result = LinuxFileCalls.LSeek(_fd, offset, LinuxFileCalls.SEEK_HOLE);
        if (result >= 0) return Math.Min(result, length);
        var errno = Marshal.GetLastPInvokeError();
        return errno switch
        {
            LinuxFileCalls.ENXIO => length,
            LinuxFileCalls.EINVAL or LinuxFileCalls.EOPNOTSUPP => length,
            _ => throw new HostIoException("lseek(SEEK_HOLE)", Path, errno),
        };
    }

    public void AdviseWillNeed(long offset, long length)
    {
        // The page cache is bypassed with O_DIRECT, so read-ahead into it would only waste memory.
        if (IsDirect || length <= 0) return;
        _ = LinuxFileCalls.PosixFAdvise(_fd, offset, length, LinuxFileCalls.POSIX_FADV_WILLNEED);
    }

    public void Dispose() => _handle.Dispose();

    private bool FAllocate(string operation, int mode, long offset, long length)
    {
        if (!IsDirect || (offset % DirectAlignment == 0 && length % DirectAlignment == 0))
            return FAllocateUnlocked(operation, mode, offset, length);
        // A partial block zeroed here must not be rewritten with stale bytes by a concurrent read-modify-write.
        var firstBlock = offset / DirectAlignment;
        var lastBlock = (offset + length - 1) / DirectAlignment;
        var low = _edgeLocks[Math.Min(firstBlock % EdgeLockStripes, lastBlock % EdgeLockStripes)];
        var high = _edgeLocks[Math.Max(firstBlock % EdgeLockStripes, lastBlock % EdgeLockStripes)];
        lock (low)
        {
            if (ReferenceEquals(low, high)) return FAllocateUnlocked(operation, mode, offset, length);
            lock (high) return FAllocateUnlocked(operation, mode, offset, length);
        }
    }

    private bool FAllocateUnlocked(string operation, int mode, long offset, long length)
    {
        int result;
        int errno;
        do
        {
            result = LinuxFileCalls.FAllocate(_fd, mode, offset, length);
            errno = result < 0 ? Marshal.GetLastPInvokeError() : 0;
        } while (result < 0 && errno == LinuxFileCalls.EINTR);
        if (result == 0) return true;
        if (errno is LinuxFileCalls.EOPNOTSUPP or LinuxFileCalls.ENOSYS) return false;
        throw new HostIoException(operation, Path, errno);
    }

    /// <summary>pread until full; a short read means end of file (the rest reads as zero).</summary>
    private void ReadFully(long offset, Span<byte> buffer)
    {
        var done = 0;
        try
        {
            while (done < buffer.Length)
            {
                var n = RandomAccess.Read(_handle, buffer[done..], offset + done);
                if (n <= 0) break;
                done += n;
                // With O_DIRECT a short read can only be end of file, and continuing at an unaligned offset would fail.
                if (IsDirect && done % DirectAlignment != 0) break;
            }
        }
        catch (IOException e) when (e is not HostIoException)
        {
            throw Translate("pread", e);
        }
        if (done < buffer.Length) buffer[done..].Clear();
    }

    private void WriteFully(long offset, ReadOnlySpan<byte> data)
    {
        try
        {
            RandomAccess.Write(_handle, data, offset);
        }
        catch (IOException e) when (e is not HostIoException)
        {
            throw Translate("pwrite", e);
        }
    }

    internal HostIoException Translate(string operation, IOException e)
    {
        // On Unix the BCL stores the raw errno in HResult for I/O errors it does not map to a subclass.
        var errno = e.HResult is > 0 and < 4096 ? e.HResult : LinuxFileCalls.EIO;
        return new HostIoException(operation, Path, errno, e.Message, e);
    }

    private void ThrowIfReadOnly(string operation)
    {
        if (IsReadOnly) throw new HostIoException(operation, Path, 9 /* EBADF */, "the file is open read-only");
    }

    private static bool IsAligned(long offset, ReadOnlySpan<byte> buffer)
    {
        fixed (byte* pointer = buffer)
        {
            return offset % DirectAlignment == 0 && buffer.Length % DirectAlignment == 0 && (nint)pointer % DirectAlignment == 0;
        }
    }

    private static long AlignDown(long value) => value - value % DirectAlignment;

    private static long AlignUp(long value) => (value + DirectAlignment - 1) / DirectAlignment * DirectAlignment;

    /// <summary>The file system type of the mount holding <paramref name="path"/>, from /proc/self/mounts.</summary>
    private static string FileSystemTypeOf(string path)
    {
        try
        {
            string best = "";
            string type = "unknown";
            foreach (var line in File.ReadLines("/proc/self/mounts"))
            {
                var fields = line.Split(' ');
                if (fields.Length < 3) continue;
                var mountPoint = fields[1].Replace("\\040", " ");
                var inside = mountPoint == "/" || path == mountPoint || path.StartsWith(mountPoint + "/", StringComparison.Ordinal);
                if (inside && mountPoint.Length >= best.Length)
                {
                    best = mountPoint;
                    type = $"{fields[2]} (mounted on {mountPoint})";
                }
            }
            return type;
        }
        catch (IOException)
        {
            return "unknown";
        }
    }
}
