namespace NbdQcow.Cache;

/// <summary>
/// What a format gives <see cref="CacheModeLayer"/>: its two flush hooks, each with the format's own internal order
/// (qcow2: data, then L2, then L1 and refcounts, then the header). Only the layer calls them: it decides when,
/// per cache mode, and runs one durable flush at a time.
/// </summary>
public interface ICacheModeTarget
{
    /// <summary>
    /// True when a durable flush has work even though no change completed since the last one covered everything
    /// (tables made dirty by the format's own bookkeeping, frees waiting for a flush, a file never synced yet).
    /// </summary>
    bool HasUnflushedState { get; }

    /// <summary>
    /// The error a FLUSH gets once an fdatasync of the image failed (the kernel may have dropped what it covered, so no
    /// later flush can promise anything until the image is reopened); null while none failed.
    /// </summary>
    IOException? SyncRefusal();

    /// <summary>
    /// True when <see cref="FlushToDiskAsync"/>, run now, would do synchronous host I/O or wait synchronously (tables
    /// to write with their ordering barriers, a journal commit, frees to apply), so the layer leaves the I/O
    /// completion thread first; false when it would only await the file's asynchronous fdatasync. A hint: a flush
    /// that finds more work than announced still does it, and leaves the completion thread itself before waiting.
    /// </summary>
    bool FlushBlocksThread => true;

    /// <summary>Makes every change completed before the call durable (ends with fdatasync). Never runs concurrently with itself.</summary>
    ValueTask FlushToDiskAsync();

    /// <summary>
    /// Unsafe mode's client FLUSH and FUA: hands what the format holds in memory to the OS, never syncing.
    /// <paramref name="orderedFlushFollows"/> says a background durable flush exists to finish the job; then the format
    /// may leave out what could reach the disk before what it depends on, and returns true to have that flush run now.
    /// </summary>
    ValueTask<bool> FlushToOsAsync(bool orderedFlushFollows, CancellationToken cancellationToken);
}
