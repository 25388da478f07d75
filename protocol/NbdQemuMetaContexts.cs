namespace NbdQcow.Protocol;

/// <summary>The meta contexts in qemu's namespace that qemu-nbd offers (-A, -B NAME), with the ids this server gives them.</summary>
public static class NbdQemuMetaContexts
{
    public const string Namespace = "qemu:";

    public const string AllocationDepth = "qemu:allocation-depth";

    public const string DirtyBitmapPrefix = "qemu:dirty-bitmap:";

    /// <summary>After <see cref="NbdLimits.BaseAllocationContextId"/>.</summary>
    public const uint AllocationDepthContextId = 2;

    /// <summary>The export's bitmap i gets id FirstBitmapContextId + i.</summary>
    public const uint FirstBitmapContextId = 3;
}
