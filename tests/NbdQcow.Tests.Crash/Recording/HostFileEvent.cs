namespace NbdQcow.Tests.Crash.Recording;

/// <summary>
/// One logged host file call. Ticks come from one counter per log, bumped when a call is issued and again
/// when it completes, so "completed before that barrier was issued" is a comparison of ticks.
/// </summary>
public sealed class HostFileEvent
{
    public required HostFileEventKind Kind { get; init; }
    public required int FileId { get; init; }
    public long Offset { get; init; }
    public long Length { get; init; }
    /// <summary>The bytes written (Write only).</summary>
    public byte[]? Data { get; init; }
    public long IssueTick { get; set; }
    /// <summary>long.MaxValue while in flight.</summary>
    public long CompleteTick { get; set; } = long.MaxValue;
    /// <summary>False when the call failed or reported "not supported" (a punch the file system refused).</summary>
    public bool Succeeded { get; set; }

    public bool IsBarrier => Kind == HostFileEventKind.Flush;

    public override string ToString() =>
        $"#{IssueTick}-{(CompleteTick == long.MaxValue ? "…" : CompleteTick.ToString())} f{FileId} {Kind} {Offset}+{Length}{(Succeeded ? "" : " (no effect)")}";
}
