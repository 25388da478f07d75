namespace NbdQcow.Tests.Interop.Infrastructure;

/// <summary>One entry of `qemu-img map --output=json` (or of nbdinfo --map): a range and its allocation state.</summary>
public sealed record MapExtent(long Start, long Length, bool Data, bool Zero)
{
    public long End => Start + Length;
}
