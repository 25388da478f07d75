namespace NbdQcow.Tests.Crash.Oracle;

/// <summary>
/// Checks a device's content after a crash against the durability contract, sector by sector:
/// the latest op promised durable at the crash, or any op after it that may have reached disk, must be what
/// each sector shows (trim may leave zero or anything written before); nothing else — in particular no data
/// written for another offset — may appear. Device content before the workload is all zeroes, or the pattern of
/// a pseudo-op (a backing file's content).
/// </summary>
public sealed class DurabilityOracle
{
    private readonly IReadOnlyList<OpRecord> _ops;
    private readonly int _initialOpId;
    private readonly List<int>?[] _opsBySector;

    /// <param name="initialOpId">Op id of the pattern the device holds before the workload (backing file), 0 for zeroes.</param>
    public DurabilityOracle(WorkloadRun run, long deviceSize, int initialOpId = 0)
    {
        _ops = run.Ops;
        _initialOpId = initialOpId;
        _opsBySector = new List<int>?[deviceSize / SectorPattern.SectorSize];
        for (var i = 0; i < _ops.Count; i++)
        {
            var op = _ops[i];
            if (!op.Step.ChangesData) continue;
            for (var s = op.FirstSector; s < op.FirstSector + op.SectorCount; s++) (_opsBySector[s] ??= []).Add(i);
        }
    }

    /// <summary>Decodes every sector of a device's content.</summary>
    public static SectorValue[] Decode(ReadOnlySpan<byte> device)
    {
        var sectors = new SectorValue[device.Length / SectorPattern.SectorSize];
        for (var s = 0; s < sectors.Length; s++) sectors[s] = SectorPattern.Decode(device.Slice(s * SectorPattern.SectorSize, SectorPattern.SectorSize));
        return sectors;
    }

    public StateVerdict Check(long crashTick, ReadOnlySpan<byte> device) => Check(crashTick, Decode(device));

    public StateVerdict Check(long crashTick, SectorValue[] sectors)
    {
        var verdict = new StateVerdict();
        var lost = new bool[_ops.Count];
        for (var s = 0L; s < _opsBySector.Length; s++)
        {
            var value = sectors[s];
            var touching = _opsBySector[s];
            var started = 0;
            var lastDurable = -1;
            if (touching is not null)
                for (; started < touching.Count && _ops[touching[started]].StartTick < crashTick; started++)
                    if (_ops[touching[started]].DurableFromTick <= crashTick) lastDurable = started;

            var ok = IsAllowed(value, s, touching, started, lastDurable);
            if (!ok)
            {
                var wroteHere = value.Kind == SectorValueKind.Written && value.WrittenForSector == s && touching is not null &&
                                (touching.Take(started).Any(i => _ops[i].Id == value.OpId) || value.OpId == _initialOpId);
                if ((value.Kind == SectorValueKind.Zero || wroteHere) && lastDurable >= 0)
                {
                    verdict.DurabilityViolations++;
                    var promised = _ops[touching![lastDurable]];
                    verdict.Note($"sector {s}: shows {Describe(value, s)}, but op {promised.Id} ({promised.Step}) was durable ({promised.DurableBecause})", foreign: false);
                }
                else
                {
                    verdict.ForeignSectors++;
                    verdict.Note($"sector {s}: shows {Describe(value, s)}, never written to this offset by then", foreign: true);
                }
            }

            // The price of the mode: the newest acknowledged write here, not yet promised, that did not survive.
            if (started > 0)
            {
                var newest = _ops[touching![started - 1]];
                if (newest.Step.Kind == WorkloadStepKind.Write && newest.AckTick <= crashTick && newest.DurableFromTick > crashTick &&
                    !(value.Kind == SectorValueKind.Written && value.OpId == newest.Id))
                    lost[touching[started - 1]] = true;
            }
        }
        foreach (var op in _ops)
            if (op.Step.Kind == WorkloadStepKind.Write && op.AckTick <= crashTick && op.DurableFromTick > crashTick) verdict.UnflushedAtRisk++;
        foreach (var l in lost)
            if (l) verdict.UnflushedLost++;
        return verdict;
    }

    private string Describe(SectorValue value, long sector) => value.Kind switch
    {
        SectorValueKind.Written when value.OpId == _initialOpId && _initialOpId != 0 =>
            value.WrittenForSector == sector ? "the backing data" : $"the backing data of sector {value.WrittenForSector}",
        SectorValueKind.Written when value.WrittenForSector != sector => $"op {value.OpId}'s data for sector {value.WrittenForSector}",
        _ => value.ToString(),
    };

    private bool IsInitial(SectorValue value) =>
        _initialOpId == 0 ? value.Kind == SectorValueKind.Zero : value.Kind == SectorValueKind.Written && value.OpId == _initialOpId;

    private bool IsAllowed(SectorValue value, long sector, List<int>? touching, int started, int lastDurable)
    {
        if (value.Kind == SectorValueKind.Garbage) return false;
        if (value.Kind == SectorValueKind.Written && value.WrittenForSector != sector) return false;
        // Before the first op (or with none durable) the initial content is allowed.
        if (lastDurable < 0 && IsInitial(value)) return true;
        for (var k = Math.Max(lastDurable, 0); k < started; k++)
        {
            var op = _ops[touching![k]];
            if (k < lastDurable) continue;
            switch (op.Step.Kind)
            {
                case WorkloadStepKind.Write:
                    if (value.Kind == SectorValueKind.Written && value.OpId == op.Id) return true;
                    break;
                case WorkloadStepKind.Zero:
                    if (value.Kind == SectorValueKind.Zero) return true;
                    break;
                case WorkloadStepKind.Trim:
                    // After a trim a sector may read as zero, as the initial content, or as anything written there before.
                    if (value.Kind == SectorValueKind.Zero || IsInitial(value)) return true;
                    for (var p = 0; p < k; p++)
                        if (value.Kind == SectorValueKind.Written && _ops[touching[p]].Id == value.OpId) return true;
                    break;
            }
        }
        return false;
    }
}
