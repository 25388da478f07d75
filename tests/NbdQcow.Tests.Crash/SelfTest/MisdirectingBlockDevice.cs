using NbdQcow.Image;

namespace NbdQcow.Tests.Crash.SelfTest;

/// <summary>An engine with a wrong mapping: every fifth write lands 4 KiB further on than asked (when it fits).</summary>
public sealed class MisdirectingBlockDevice(IBlockDevice inner) : DelegatingBlockDevice(inner)
{
    private int _writes;

    public override ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, bool fua, CancellationToken cancellationToken = default)
    {
        var shifted = ++_writes % 5 == 0 && offset + 4096 + data.Length <= Size;
        return Inner.WriteAsync(shifted ? offset + 4096 : offset, data, fua, cancellationToken);
    }
}
