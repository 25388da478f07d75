using NbdQcow.Image;

namespace NbdQcow.Tests.Crash.Oracle;

/// <summary>One request of a crash workload; offsets and lengths are whole 512-byte sectors.</summary>
public readonly record struct WorkloadStep(WorkloadStepKind Kind, long Offset = 0, long Length = 0, bool Fua = false,
    ZeroFlags ZeroFlags = ZeroFlags.None, int AdvanceMilliseconds = 0)
{
    public bool ChangesData => Kind is WorkloadStepKind.Write or WorkloadStepKind.Zero or WorkloadStepKind.Trim;

    public override string ToString() => Kind switch
    {
        WorkloadStepKind.Write => $"write {Offset}+{Length}{(Fua ? " fua" : "")}",
        WorkloadStepKind.Zero => $"zero {Offset}+{Length} {ZeroFlags}",
        WorkloadStepKind.Trim => $"trim {Offset}+{Length}{(Fua ? " fua" : "")}",
        WorkloadStepKind.Advance => $"advance {AdvanceMilliseconds} ms",
        _ => "flush",
    };
}
