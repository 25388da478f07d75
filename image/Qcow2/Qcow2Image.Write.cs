namespace NbdQcow.Image.Qcow2;

// The write path (qcow2write helper's part). This first version serves every image read-only so the read side
// can be used end to end; qcow2write replaces these members with the allocating write path.
public sealed partial class Qcow2Image
{
    /// <summary>Features of a writable image (used when <see cref="IsReadOnly"/> is false).</summary>
    private BlockDeviceFeatures WritableFeatures =>
        BlockDeviceFeatures.ReadOnly | BlockDeviceFeatures.BlockStatus | BlockDeviceFeatures.Cache | BlockDeviceFeatures.MultiConn;

    /// <summary>Called at the end of a read-write open, after header, L1, backing and bitmaps are loaded.</summary>
    private void InitializeWriting() => IsReadOnly = true;

    /// <summary>Called by DisposeAsync on a writable image before files are closed: flush and mark clean.</summary>
    private ValueTask CloseWritingAsync() => default;

    public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, bool fua, CancellationToken cancellationToken = default) =>
        ValueTask.FromException(ReadOnlyError());

    public ValueTask ZeroAsync(long offset, long length, ZeroFlags flags, CancellationToken cancellationToken = default) =>
        ValueTask.FromException(ReadOnlyError());

    public ValueTask TrimAsync(long offset, long length, bool fua, CancellationToken cancellationToken = default) =>
        ValueTask.FromException(ReadOnlyError());

    public ValueTask FlushAsync(CancellationToken cancellationToken = default) => default;

    private BlockDeviceException ReadOnlyError() => new(BlockError.Permission, $"qcow2 image {Path} is open read-only");
}
