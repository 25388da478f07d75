namespace NbdQcow.Tests.Crash.Recording;

/// <summary>The host file calls that change what is (or may be) on disk.</summary>
public enum HostFileEventKind
{
    Write,
    /// <summary>fdatasync: the barrier.</summary>
    Flush,
    SetLength,
    PunchHole,
    ZeroRange,
    /// <summary>Zero range that also grows the file to cover it (fallocate without KEEP_SIZE).</summary>
    AllocateZeroed,
}
