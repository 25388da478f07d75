using NbdQcow.Tests.Crash.Recording;

namespace NbdQcow.Tests.Crash.States;

/// <summary>
/// Builds crash states from a host file log per the crash model (ARCHITECTURE.md): writes completed before the
/// last completed fdatasync are on disk; later ones each may be or not, in any combination, torn at 4 KiB.
/// Explores, per crash point: the base alone, in-order prefixes of the later calls, random subsets and torn
/// writes — with a fixed seed and a bounded count.
/// </summary>
public static class CrashStateGenerator
{
    public const int TearSize = 4096;

    /// <summary>Candidate crash ticks: just before and just after each barrier completes, a few random ones, and the end.</summary>
    public static IReadOnlyList<long> ChooseCrashTicks(IReadOnlyList<HostFileEvent> events, long finalTick, CrashStateBudget budget, Random random)
    {
        var candidates = new SortedSet<long>();
        foreach (var e in events)
        {
            if (!e.IsBarrier || e.CompleteTick > finalTick) continue;
            candidates.Add(e.CompleteTick - 1);
            candidates.Add(e.CompleteTick);
        }
        var chosen = new SortedSet<long> { finalTick };
        var list = candidates.Where(t => t > 0 && t < finalTick).ToList();
        var slots = Math.Max(0, budget.CrashPoints - 1);
        if (list.Count <= slots) chosen.UnionWith(list);
        else
            for (var i = 0; i < slots; i++) chosen.Add(list[(int)((long)i * (list.Count - 1) / Math.Max(1, slots - 1))]);
        for (var i = 0; i < budget.RandomTicks && finalTick > 1; i++) chosen.Add(random.NextInt64(1, finalTick));
        return chosen.ToList();
    }

    public static CrashPoint At(IReadOnlyList<HostFileEvent> events, long tick, CrashStateBudget budget, Random random)
    {
        // Per file: the issue tick of the last barrier that completed by the crash.
        var barrierIssue = new Dictionary<int, long>();
        foreach (var e in events)
        {
            if (e.IsBarrier && e.Succeeded && e.CompleteTick <= tick &&
                (!barrierIssue.TryGetValue(e.FileId, out var issued) || e.IssueTick > issued))
                barrierIssue[e.FileId] = e.IssueTick;
        }
        var durable = new List<HostFileEvent>();
        var volatileEvents = new List<HostFileEvent>();
        foreach (var e in events)
        {
            if (e.IsBarrier || e.IssueTick > tick) continue;
            if (e.CompleteTick != long.MaxValue && !e.Succeeded && e.Kind != HostFileEventKind.Write) continue; // refused: no effect
            var covered = barrierIssue.TryGetValue(e.FileId, out var b) && e.CompleteTick < b;
            (covered ? durable : volatileEvents).Add(e);
        }
        return new CrashPoint(tick, durable, volatileEvents, States(volatileEvents, budget, random));
    }

    private static List<CrashState> States(List<HostFileEvent> volatileEvents, CrashStateBudget budget, Random random)
    {
        var n = volatileEvents.Count;
        var states = new List<CrashState> { new("base only", new bool[n]) };
        if (n == 0) return states;

        // In-order prefixes (the page cache written back in order), always including "all of them".
        var prefixLengths = new SortedSet<int> { n };
        for (var i = 1; i < budget.Prefixes && prefixLengths.Count < n; i++) prefixLengths.Add(Math.Max(1, (int)((long)i * n / budget.Prefixes)));
        foreach (var k in prefixLengths) states.Add(new CrashState($"prefix {k}/{n}", Prefix(n, k)));

        // Random subsets: any combination may have reached disk.
        for (var i = 0; i < budget.RandomSubsets && n > 1; i++)
        {
            var included = new bool[n];
            for (var j = 0; j < n; j++) included[j] = random.Next(2) == 1;
            states.Add(new CrashState($"random subset {i + 1}", included));
        }

        // Torn writes: a prefix whose last write reached disk in only some of its 4 KiB blocks.
        var tearable = new List<int>();
        for (var j = 0; j < n; j++)
            if (volatileEvents[j].Kind == HostFileEventKind.Write && BlockCount(volatileEvents[j]) > 1) tearable.Add(j);
        for (var i = 0; i < budget.TornWrites && tearable.Count > 0; i++)
        {
            var victim = tearable[random.Next(tearable.Count)];
            var blocks = new bool[BlockCount(volatileEvents[victim])];
            for (var b = 0; b < blocks.Length; b++) blocks[b] = random.Next(2) == 1;
            blocks[random.Next(blocks.Length)] = false;
            blocks[random.Next(blocks.Length)] = true;
            var included = i % 2 == 0 ? Prefix(n, victim + 1) : RandomWith(n, victim, random);
            states.Add(new CrashState($"torn write {volatileEvents[victim].Offset}+{volatileEvents[victim].Length}", included, victim, blocks));
        }
        return states;
    }

    public static int BlockCount(HostFileEvent e) =>
        e.Length == 0 ? 0 : (int)((e.Offset + e.Length - 1) / TearSize - e.Offset / TearSize + 1);

    private static bool[] Prefix(int n, int k)
    {
        var included = new bool[n];
        for (var j = 0; j < k; j++) included[j] = true;
        return included;
    }

    private static bool[] RandomWith(int n, int must, Random random)
    {
        var included = new bool[n];
        for (var j = 0; j < n; j++) included[j] = random.Next(2) == 1;
        included[must] = true;
        return included;
    }
}
