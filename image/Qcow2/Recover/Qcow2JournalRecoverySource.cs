using NbdQcow.Image.Qcow2.Journal;

namespace NbdQcow.Image.Qcow2.Recover;

/// <summary>
/// The image's metadata journal (`serve --journal`) as a recovery history: every table image of every committed
/// transaction still kept (archives and the live journal). Transactions only in the live journal are newer than
/// the tables in place and are laid over them; archived ones are evidence of which L2 table an L1 slot held.
/// </summary>
public sealed class Qcow2JournalRecoverySource(string imagePath) : IRecoveryHistorySource
{
    /// <summary>The source for <paramref name="imagePath"/>, or null when it has no journal files.</summary>
    public static Qcow2JournalRecoverySource? For(string imagePath) =>
        Qcow2JournalHistory.Files(imagePath).Count > 0 ? new Qcow2JournalRecoverySource(imagePath) : null;

    public string Name => string.Join(", ", Qcow2JournalHistory.Files(imagePath));

    public IEnumerable<RecoveryTableWrite> ReadTableWrites()
    {
        foreach (var entry in Qcow2JournalHistory.Enumerate(imagePath))
            foreach (var table in entry.Tables)
                yield return new RecoveryTableWrite((long)entry.Sequence, table.Offset, table.Image, entry.IsInPlace);
    }
}
