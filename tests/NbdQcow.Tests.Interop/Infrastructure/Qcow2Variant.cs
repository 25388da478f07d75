namespace NbdQcow.Tests.Interop.Infrastructure;

/// <summary>
/// One kind of qcow2 image qemu-img makes, built with qemu's tools into a folder and filled with known patterns.
/// <see cref="Build"/> gets the folder and creates <see cref="ImageFileName"/> (and any backing or data files) there.
/// </summary>
public sealed record Qcow2Variant(string Name, string ImageFileName, Func<string, Task> Build)
{
    /// <summary>Serve this internal snapshot (read-only) instead of the current state.</summary>
    public string? Snapshot { get; init; }

    public override string ToString() => Name;
}
