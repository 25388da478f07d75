namespace NbdQcow.Image;

/// <summary>
/// The block status qemu-nbd offers beyond base:allocation, for backup tools and for copies that keep a chain's
/// shape: qemu:allocation-depth and qemu:dirty-bitmap:NAME. Extents are appended in order, without gaps, covering
/// at least one byte of [offset, offset+length); a prefix is a valid answer.
/// </summary>
public interface IQemuStatusSource
{
    /// <summary>0 = unallocated in the whole chain, 1 = allocated in this image, N = in the (N-1)th backing layer.</summary>
    ValueTask GetAllocationDepthAsync(long offset, long length, List<StatusExtent> extents, CancellationToken cancellationToken = default);

    /// <summary>1 = dirty, 0 = clean, at the bitmap's granularity. Fails if the bitmap cannot be exported (see <see cref="CheckBitmapExportable"/>).</summary>
    ValueTask GetDirtyBitmapStatusAsync(string bitmap, long offset, long length, List<StatusExtent> extents, CancellationToken cancellationToken = default);

    /// <summary>Null when the persistent bitmap can be exported, else why not (missing, inconsistent, not a dirty bitmap).</summary>
    string? CheckBitmapExportable(string bitmap);
}
