namespace NbdQcow.HostIo;

/// <summary>A host file whose fdatasync goes through a <see cref="SyncFailureLatch"/> shared by the image's files.</summary>
public sealed class SyncLatchedHostFile(IHostFile inner, SyncFailureLatch latch) : HostFileDecorator(inner)
{
    public SyncFailureLatch Latch => latch;

    public override void Flush() => latch.Sync(Inner);

    public override ValueTask FlushAsync() => latch.SyncAsync(Inner);
}
