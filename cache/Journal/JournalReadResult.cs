namespace NbdQcow.Cache.Journal;

/// <summary>What <see cref="JournalReader"/> found: the header, the committed transactions in order, and why it stopped.</summary>
public sealed record JournalReadResult(JournalFileHeader? Header, IReadOnlyList<JournalTransaction> Transactions, long EndOffset, string StopReason)
{
    /// <summary>Sequence the next transaction of this journal would get.</summary>
    public ulong NextSequence => Transactions.Count > 0 ? Transactions[^1].Sequence + 1 : Header?.FirstSequence ?? 1;
}
