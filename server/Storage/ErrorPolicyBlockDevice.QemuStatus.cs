using NbdQcow.Image;

namespace NbdQcow.Server.Storage;

/// <summary>
/// The qemu meta contexts (allocation depth, dirty bitmaps) pass straight through the error policies: they read
/// only metadata already in memory, so there is nothing to hold or retry.
/// </summary>
public sealed partial class ErrorPolicyBlockDevice : IQemuStatusSource
{
    public ValueTask GetAllocationDepthAsync(long offset, long length, List<StatusExtent> extents, CancellationToken cancellationToken = default) =>
        InnerStatus.GetAllocationDepthAsync(offset, length, extents, cancellationToken);

    public ValueTask GetDirtyBitmapStatusAsync(string bitmap, long offset, long length, List<StatusExtent> extents, CancellationToken cancellationToken = default) =>
        InnerStatus.GetDirtyBitmapStatusAsync(bitmap, offset, length, extents, cancellationToken);

    public string? CheckBitmapExportable(string bitmap) =>
        _inner is IQemuStatusSource source ? source.CheckBitmapExportable(bitmap) : "the image format has no persistent bitmaps";

    private IQemuStatusSource InnerStatus => _inner as IQemuStatusSource
        ?? throw new NotSupportedException("the image format offers no qemu meta contexts");
}
