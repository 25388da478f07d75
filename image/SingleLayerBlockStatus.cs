namespace NbdQcow.Image;

/// <summary>
/// The block-status answers formats without layers share (raw, Bochs): runs of one allocation state merged into
/// extents with a bound per call, and an allocation depth of 1 throughout.
/// </summary>
public static class SingleLayerBlockStatus
{
    /// <summary>
    /// Most extents one call adds: a finely fragmented image (a sparse file, a Bochs catalog alternating allocated
    /// and unallocated 512-byte extents) would otherwise build a list of a million entries per request. The answer
    /// then covers a prefix of the range, as the protocol allows.
    /// </summary>
    public const int MaxExtentsPerCall = 1024;

    /// <summary>
    /// Adds a run of <paramref name="length"/> bytes to the answer a call began at <paramref name="firstOfCall"/>
    /// (the list's count then), merged into the call's last extent when the state is the same. False when the
    /// call holds <see cref="MaxExtentsPerCall"/> extents: the caller stops there.
    /// </summary>
    public static bool Append(List<BlockExtent> extents, int firstOfCall, long length, BlockExtentFlags flags)
    {
        if (extents.Count > firstOfCall && extents[^1].Flags == flags)
        {
            extents[^1] = new BlockExtent(extents[^1].Length + length, flags);
            return true;
        }
        if (extents.Count - firstOfCall >= MaxExtentsPerCall) return false;
        extents.Add(new BlockExtent(length, flags));
        return true;
    }

    /// <summary>One layer holding every byte (holes included), as qemu-nbd -A reports a raw or Bochs image.</summary>
    public static ValueTask AddAllocationDepth(long length, List<StatusExtent> extents)
    {
        extents.Add(new StatusExtent(length, 1));
        return default;
    }
}
