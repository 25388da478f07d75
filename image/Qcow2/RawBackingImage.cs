using NbdQcow.Cache;

namespace NbdQcow.Image.Qcow2;

/// <summary>A raw file used read-only as a qcow2 backing file (guest offset = file offset, beyond the end reads zero).</summary>
internal sealed class RawBackingImage(IHostFile file) : IBlockDevice, IQemuStatusSource
{
    public long Size { get; } = file.Length;

    public BlockDeviceFeatures Features => BlockDeviceFeatures.ReadOnly | BlockDeviceFeatures.BlockStatus;

    public BlockSizeHints BlockSizes => new(1, 4096, 32 << 20);

    public ValueTask ReadAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        file.Read(offset, buffer.Span);
        return default;
    }

    public ValueTask GetBlockStatusAsync(long offset, long length, List<BlockExtent> extents, CancellationToken cancellationToken = default)
    {
        long end = offset + length;
        while (offset < end)
        {
            if (offset >= Size)
            {
                extents.Add(new BlockExtent(end - offset, BlockExtentFlags.Hole | BlockExtentFlags.Zero));
                break;
            }
            long data = file.SeekData(offset);
            if (data > offset)
            {
                long holeEnd = Math.Min(data, end);
                extents.Add(new BlockExtent(holeEnd - offset, BlockExtentFlags.Hole | BlockExtentFlags.Zero));
                offset = holeEnd;
                continue;
            }
            long dataEnd = Math.Min(Math.Max(file.SeekHole(offset), offset + 1), end);
            extents.Add(new BlockExtent(dataEnd - offset, BlockExtentFlags.Data));
            offset = dataEnd;
        }
        return default;
    }

    /// <summary>A raw layer holds every byte (as qemu sees a raw file), and the zeroes past its end count as its own.</summary>
    public ValueTask GetAllocationDepthAsync(long offset, long length, List<StatusExtent> extents, CancellationToken cancellationToken = default)
    {
        extents.Add(new StatusExtent(length, 1));
        return default;
    }

    public ValueTask GetDirtyBitmapStatusAsync(string bitmap, long offset, long length, List<StatusExtent> extents, CancellationToken cancellationToken = default) =>
        throw new BlockDeviceException(BlockError.Invalid, $"backing file {file.Path} is raw: no bitmap \"{bitmap}\"");

    public string? CheckBitmapExportable(string bitmap) => "a raw file has no persistent bitmaps";

    public ValueTask CacheAsync(long offset, long length, CancellationToken cancellationToken = default) => default;

    public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, bool fua, CancellationToken cancellationToken = default) => throw ReadOnly();

    public ValueTask ZeroAsync(long offset, long length, ZeroFlags flags, CancellationToken cancellationToken = default) => throw ReadOnly();

    public ValueTask TrimAsync(long offset, long length, bool fua, CancellationToken cancellationToken = default) => throw ReadOnly();

    public ValueTask FlushAsync(CancellationToken cancellationToken = default) => default;

    public ValueTask DisposeAsync()
    {
        file.Dispose();
        return default;
    }

    private BlockDeviceException ReadOnly() => new(BlockError.Permission, $"backing file {file.Path} is read-only");
}
