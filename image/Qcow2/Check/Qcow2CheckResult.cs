namespace NbdQcow.Image.Qcow2.Check;

/// <summary>
/// What <see cref="Qcow2Checker"/> found. Corruptions are errors (a refcount lower than the references, a mapping
/// outside the file or onto metadata, a bad entry, a wrong COPIED flag); leaks are clusters whose refcount is
/// higher than their references (harmless, repairable).
/// </summary>
public sealed class Qcow2CheckResult
{
    /// <summary>At most this many messages are kept; the counts stay exact.</summary>
    public const int MaxMessages = 1000;

    public long Corruptions { get; internal set; }
    public long Leaks { get; internal set; }
    public List<string> CorruptionMessages { get; } = new();
    public List<string> LeakMessages { get; } = new();
    public long RepairedCorruptions { get; internal set; }
    public long RepairedLeaks { get; internal set; }
    /// <summary>Clusters referenced by the image (data and metadata).</summary>
    public long AllocatedClusters { get; internal set; }
    /// <summary>Guest clusters mapped to data (active L1).</summary>
    public long MappedGuestClusters { get; internal set; }
    public long TotalGuestClusters { get; internal set; }
    /// <summary>End of the last referenced cluster.</summary>
    public long ImageEndOffset { get; internal set; }
    /// <summary>Set when the header itself could not be used: nothing else was checked.</summary>
    public string? FatalError { get; internal set; }
    /// <summary>What was done about a pending nbdqcow metadata journal (applied in memory, or replayed), or null.</summary>
    public string? JournalNote { get; internal set; }

    public bool IsClean => Corruptions == 0 && Leaks == 0 && FatalError is null;

    internal void Corruption(string message)
    {
        Corruptions++;
        if (CorruptionMessages.Count < MaxMessages) CorruptionMessages.Add(message);
    }

    internal void Leak(string message)
    {
        Leaks++;
        if (LeakMessages.Count < MaxMessages) LeakMessages.Add(message);
    }
}
