namespace NbdQcow.Cache.Journal;

/// <summary>The journal file's header block: table size, generation (0 = history archive), first sequence, creation time.</summary>
public sealed record JournalFileHeader(int TableSize, ulong Generation, ulong FirstSequence, long CreatedUnixMs)
{
    public bool IsArchive => Generation == 0;
}
