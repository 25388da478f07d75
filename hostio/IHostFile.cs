namespace NbdQcow.HostIo;

/// <summary>
/// One open host file: positional I/O (read, write, fdatasync, fallocate), so strace and write-logging tests see
/// every write and barrier. Tests put recording or fault-injecting implementations here. Implementations are
/// thread-safe for concurrent positional I/O. The synchronous members serve metadata and tools; the data path
/// uses <see cref="ReadAsync"/>, <see cref="WriteAsync"/> and <see cref="FlushAsync"/>, which an engine that
/// completes I/O asynchronously (io_uring) implements natively and everything else runs synchronously.
/// </summary>
public interface IHostFile : IDisposable
{
    string Path { get; }

    /// <summary>True when opened with O_DIRECT (page cache bypassed).</summary>
    bool IsDirect { get; }

    bool IsReadOnly { get; }

    /// <summary>Current file length in bytes.</summary>
    long Length { get; }

    /// <summary>Reads exactly buffer.Length bytes; bytes beyond end of file read as zero. Any alignment is accepted.</summary>
    void Read(long offset, Span<byte> buffer);

    /// <summary>Writes all of data (extending the file if needed). Any alignment is accepted.</summary>
    void Write(long offset, ReadOnlySpan<byte> data);

    /// <summary>Barrier: fdatasync. Every write completed before the call is durable when it returns.</summary>
    void Flush();

    /// <summary>
    /// <see cref="Read"/> for the data path. The buffer must stay untouched until the task completes. Default: the
    /// synchronous call, completed before it returns.
    /// </summary>
    ValueTask ReadAsync(long offset, Memory<byte> buffer)
    {
        Read(offset, buffer.Span);
        return ValueTask.CompletedTask;
    }

    /// <summary><see cref="Write"/> for the data path; the write counts as completed when the task does. Default: synchronous.</summary>
    ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data)
    {
        Write(offset, data.Span);
        return ValueTask.CompletedTask;
    }

    /// <summary>
    /// <see cref="Flush"/> for the data path: a barrier covering every write whose task completed before the call,
    /// never one still in flight (no linked submissions). Default: synchronous.
    /// </summary>
    ValueTask FlushAsync()
    {
        Flush();
        return ValueTask.CompletedTask;
    }

    void SetLength(long length);

    /// <summary>Deallocates the range (reads as zero afterwards). Returns false when the file system cannot.</summary>
    bool TryPunchHole(long offset, long length);

    /// <summary>Makes the range read as zero efficiently (FALLOC_FL_ZERO_RANGE or punch). Returns false when only a slow path exists.</summary>
    bool TryZeroRange(long offset, long length);

    /// <summary>
    /// Makes the range read as zero and lie inside the file (the length grows to cover it, never shrinks) without
    /// writing data: FALLOC_FL_ZERO_RANGE, or a punched hole plus a plain fallocate. Returns false when only the
    /// slow path (writing zeroes) exists. Used to allocate a qcow2 cluster whose copy-on-write parts are zero.
    /// </summary>
    bool TryAllocateZeroed(long offset, long length);

    /// <summary>
    /// Allocates host space for the range without changing its content (plain fallocate), so later writes into it
    /// cannot fail for lack of space. Returns false when the file system cannot. Default: false.
    /// </summary>
    bool TryReserve(long offset, long length) => false;

    /// <summary>Next offset at or after <paramref name="offset"/> holding data (SEEK_DATA), or Length when none.</summary>
    long SeekData(long offset);

    /// <summary>Next hole at or after <paramref name="offset"/> (SEEK_HOLE); Length counts as a hole.</summary>
    long SeekHole(long offset);

    /// <summary>Prefetch hint (posix_fadvise WILLNEED); decorators forward it. Default: no-op.</summary>
    void AdviseWillNeed(long offset, long length) { }
}
