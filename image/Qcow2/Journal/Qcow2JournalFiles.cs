namespace NbdQcow.Image.Qcow2.Journal;

/// <summary>
/// Where an image's journal files live, next to the image: IMAGE.journal (the live write-ahead log),
/// IMAGE.journal.history and IMAGE.journal.history.1 (transactions retired by checkpoints, bounded).
/// </summary>
public static class Qcow2JournalFiles
{
    /// <summary>The journal is checkpointed (tables written in place, journal reset) once it holds this much.</summary>
    public const long DefaultCheckpointBytes = 32L << 20;

    /// <summary>The history archive rotates past this size, so at most about twice it is kept.</summary>
    public const long DefaultHistoryBytes = 64L << 20;

    public static string JournalPath(string imagePath) => System.IO.Path.GetFullPath(imagePath) + ".journal";

    public static string HistoryPath(string imagePath) => JournalPath(imagePath) + ".history";
}
