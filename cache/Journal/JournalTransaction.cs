namespace NbdQcow.Cache.Journal;

/// <summary>
/// One committed journal transaction: every table image made durable by one flush, with the flush's sequence number
/// (increasing across the image's life) and wall-clock time.
/// </summary>
public sealed record JournalTransaction(ulong Generation, ulong Sequence, DateTimeOffset Timestamp, IReadOnlyList<JournalTableImage> Tables)
{
    /// <summary>Bytes the transaction takes in the file (padded to 4 KiB).</summary>
    public long FileBytes { get; init; }
}
