namespace NbdQcow.Tests.Crash.Oracle;

/// <summary>What the durability oracle found in one crash state.</summary>
public sealed class StateVerdict
{
    private const int MaxProblemsPerRule = 2;
    private int _durabilityNotes;
    private int _foreignNotes;

    /// <summary>Sectors where data the contract promised is gone or stale (rule 2).</summary>
    public int DurabilityViolations { get; set; }

    /// <summary>Sectors returning data never written to that offset (rule 3).</summary>
    public int ForeignSectors { get; set; }

    /// <summary>Acknowledged but not yet promised-durable data writes at the crash.</summary>
    public int UnflushedAtRisk { get; set; }

    /// <summary>Of those, how many did not survive (in full) in this state: the price of the mode.</summary>
    public int UnflushedLost { get; set; }

    public List<string> Problems { get; } = [];

    public bool HasViolation => DurabilityViolations > 0 || ForeignSectors > 0;

    /// <summary>Keeps the first few problems of each rule, so one kind cannot hide the other.</summary>
    public void Note(string problem, bool foreign)
    {
        ref var notes = ref foreign ? ref _foreignNotes : ref _durabilityNotes;
        if (notes++ < MaxProblemsPerRule) Problems.Add(problem);
    }
}
