using NbdQcow.Cache.Journal;

namespace NbdQcow.Image.Qcow2.Journal;

/// <summary>
/// One committed transaction from an image's journal history: its sequence number, time and table images (offset
/// in the image file + whole table content: L2 tables, refcount blocks, L1 and refcount table clusters), where it
/// was found, and whether a checkpoint has since written it in place (false: it is only in the live journal).
/// </summary>
public sealed record Qcow2JournalHistoryEntry(JournalTransaction Transaction, string SourcePath, bool IsInPlace)
{
    public ulong Sequence => Transaction.Sequence;

    public DateTimeOffset Timestamp => Transaction.Timestamp;

    public IReadOnlyList<JournalTableImage> Tables => Transaction.Tables;
}
