using NbdQcow.Image;

namespace NbdQcow.Tests.Crash.SelfTest;

/// <summary>An engine that forgets its barriers: FLUSH and FUA are acknowledged without syncing.</summary>
public sealed class FlushDroppingBlockDevice(IBlockDevice inner) : DelegatingBlockDevice(inner)
{
    public override ValueTask FlushAsync(CancellationToken cancellationToken = default) => ValueTask.CompletedTask;

    public override ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, bool fua, CancellationToken cancellationToken = default) =>
        Inner.WriteAsync(offset, data, fua: false, cancellationToken);
}
