namespace NbdQcow.HostIo;

/// <summary>How to open a host file.</summary>
public sealed record HostFileOptions(bool ReadOnly, bool Direct, bool Create = false);
