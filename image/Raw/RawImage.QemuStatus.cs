namespace NbdQcow.Image.Raw;

// A raw image is one layer that holds every byte (qemu-nbd -A reports depth 1 throughout, holes included),
// and has nowhere to keep persistent bitmaps.
public sealed partial class RawImage : IQemuStatusSource
{
    public ValueTask GetAllocationDepthAsync(long offset, long length, List<StatusExtent> extents, CancellationToken cancellationToken = default) =>
        SingleLayerBlockStatus.AddAllocationDepth(length, extents);

    public ValueTask GetDirtyBitmapStatusAsync(string bitmap, long offset, long length, List<StatusExtent> extents, CancellationToken cancellationToken = default) =>
        throw new BlockDeviceException(BlockError.Invalid, $"{_file.Path}: bitmap \"{bitmap}\": {CheckBitmapExportable(bitmap)}");

    public string? CheckBitmapExportable(string bitmap) => "a raw image has no persistent bitmaps (they live in qcow2 images)";
}
