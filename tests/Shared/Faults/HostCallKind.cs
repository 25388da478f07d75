namespace NbdQcow.Tests.Faults;

/// <summary>The kinds of host file call a <see cref="FaultInjectingHostFile"/> counts and can fail.</summary>
public enum HostCallKind
{
    Read,
    Write,
    Flush,
    SetLength,
    /// <summary>fallocate in any form: punch hole, zero range, allocate zeroed.</summary>
    Allocate,
}
