namespace NbdQcow.Cache.Journal;

/// <summary>One metadata table as committed: its offset in the image file and its whole content.</summary>
public sealed record JournalTableImage(long Offset, byte[] Image);
