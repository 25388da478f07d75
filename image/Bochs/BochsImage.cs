using System.Buffers.Binary;
using System.Text;
using NbdQcow.Cache;
using NbdQcow.HostIo;

namespace NbdQcow.Image.Bochs;

/// <summary>
/// A Bochs growing image, read-only. Layout (little-endian): a 512-byte header, a catalog of 32-bit extent
/// numbers (0xffffffff: not allocated), then the extents, each a sector bitmap followed by its data sectors;
/// a sector whose bitmap bit is clear reads as zeroes.
/// </summary>
internal sealed class BochsImage : IBlockDevice, IQemuStatusSource
{
    public const string MagicText = "Bochs Virtual HD Image";
    private const int HeaderSize = 512;
    private const int Sector = 512;
    private const uint Unallocated = 0xffffffff;
    private const uint Version1 = 0x00010000;
    private const uint Version2 = 0x00020000;
    /// <summary>The largest catalog bximage makes (about 8 TB); a bigger one is refused rather than read into memory.</summary>
    private const uint MaxCatalogEntries = 0x100000;
    private const uint MaxExtentBytes = 0x800000;

    private readonly IHostFile _file;
    private readonly uint[] _catalog;
    private readonly long _dataOffset;
    private readonly long _extentSize;
    private readonly long _bitmapBytes;
    private readonly long _extentStride;

    private BochsImage(IHostFile file, long size, uint[] catalog, long dataOffset, long extentSize, long bitmapBytes)
    {
        _file = file;
        Size = size;
        _catalog = catalog;
        _dataOffset = dataOffset;
        _extentSize = extentSize;
        _bitmapBytes = bitmapBytes;
        _extentStride = bitmapBytes + RoundUpToSector(extentSize);
    }

    public static bool HasMagic(ReadOnlySpan<byte> head) =>
        head.Length > MagicText.Length && head[..MagicText.Length].SequenceEqual(Encoding.ASCII.GetBytes(MagicText)) && head[MagicText.Length] == 0;

    public static BochsImage Open(string path, ImageOpenOptions options)
    {
        var factory = options.HostFileFactory ?? HostFile.Open;
        var file = LockedHostFile.Open(factory, path, new HostFileOptions(true, options.CacheMode.UsesODirect()), options.Locking);
        try
        {
            return Read(file);
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    private static BochsImage Read(IHostFile file)
    {
        if (file.Length < HeaderSize)
            throw new BochsFormatException("header", file.Length, $"the file is shorter than the {HeaderSize}-byte header");
        Span<byte> header = stackalloc byte[HeaderSize];
        file.Read(0, header);
        if (!HasMagic(header))
            throw new BochsFormatException("magic", "(missing)", $"not a Bochs image (it starts with \"{MagicText}\")");
        if (!Text(header.Slice(32, 16)).Equals("Redolog", StringComparison.Ordinal) || !Text(header.Slice(48, 16)).Equals("Growing", StringComparison.Ordinal))
            throw new BochsFormatException("type", $"{Text(header.Slice(32, 16))}/{Text(header.Slice(48, 16))}", "only Redolog/Growing images are supported");
        uint version = BinaryPrimitives.ReadUInt32LittleEndian(header[64..]);
        if (version is not (Version1 or Version2))
            throw new BochsFormatException("version", $"0x{version:x}", "allowed: 0x10000 or 0x20000");
        uint catalogOffset = BinaryPrimitives.ReadUInt32LittleEndian(header[68..]);
        uint entries = BinaryPrimitives.ReadUInt32LittleEndian(header[72..]);
        uint bitmapSize = BinaryPrimitives.ReadUInt32LittleEndian(header[76..]);
        uint extentSize = BinaryPrimitives.ReadUInt32LittleEndian(header[80..]);
        ulong diskSize = BinaryPrimitives.ReadUInt64LittleEndian(header[(version == Version1 ? 84 : 88)..]);
        if (entries > MaxCatalogEntries)
            throw new BochsFormatException("catalog", entries, $"more than {MaxCatalogEntries} entries");
        if (extentSize is < Sector or > MaxExtentBytes || extentSize % Sector != 0)
            throw new BochsFormatException("extent", extentSize, $"allowed: a multiple of {Sector} from {Sector} to {MaxExtentBytes}");
        if (bitmapSize == 0 || bitmapSize * 8L < extentSize / Sector)
            throw new BochsFormatException("bitmap", bitmapSize, $"too small for {extentSize / Sector} sectors an extent");
        long size = (long)(diskSize / Sector * Sector);
        if (diskSize > long.MaxValue / 2 || (size + extentSize - 1) / extentSize > entries)
            throw new BochsFormatException("disk", diskSize, $"larger than the catalog's {entries} extents of {extentSize} bytes");
        if (catalogOffset < HeaderSize || catalogOffset + entries * 4L > file.Length)
            throw new BochsFormatException("header", catalogOffset, "the catalog does not lie between the header and the end of the file");
        var raw = new byte[entries * 4];
        file.Read(catalogOffset, raw);
        var catalog = new uint[entries];
        long dataOffset = catalogOffset + entries * 4L;
        long bitmapBytes = RoundUpToSector(bitmapSize);
        long stride = bitmapBytes + RoundUpToSector(extentSize);
        for (var i = 0; i < entries; i++)
        {
            catalog[i] = BinaryPrimitives.ReadUInt32LittleEndian(raw.AsSpan(i * 4));
            // An extent must lie inside the file, so a crafted catalog cannot make reads leave it.
            if (catalog[i] != Unallocated && dataOffset + (catalog[i] + 1L) * stride > file.Length)
                throw new BochsFormatException($"catalog[{i}]", catalog[i], "the extent lies past the end of the file");
        }
        return new BochsImage(file, size, catalog, dataOffset, extentSize, bitmapBytes);
    }

    public long Size { get; }

    public BlockDeviceFeatures Features => BlockDeviceFeatures.ReadOnly | BlockDeviceFeatures.BlockStatus | BlockDeviceFeatures.MultiConn;

    public BlockSizeHints BlockSizes => new(1, Sector, 32u << 20);

    public ValueTask ReadAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        try
        {
            var span = buffer.Span;
            var done = 0;
            Span<byte> bitmapByte = stackalloc byte[1];
            while (done < span.Length)
            {
                long position = offset + done;
                long within = position % _extentSize;
                // One sector at most per step: each sector has its own bitmap bit.
                var count = (int)Math.Min(span.Length - done, Sector - position % Sector);
                var target = span.Slice(done, count);
                uint extent = _catalog[position / _extentSize];
                if (extent == Unallocated)
                {
                    target.Clear();
                }
                else
                {
                    long start = _dataOffset + extent * _extentStride;
                    long sector = within / Sector;
                    _file.Read(start + sector / 8, bitmapByte);
                    if (((bitmapByte[0] >> (int)(sector % 8)) & 1) == 0)
                        target.Clear();
                    else
                        _file.Read(start + _bitmapBytes + within, target);
                }
                done += count;
            }
            return ValueTask.CompletedTask;
        }
        catch (IOException e)
        {
            return ValueTask.FromException(HostIoErrors.ToBlockDeviceException(e));
        }
    }

    public ValueTask GetBlockStatusAsync(long offset, long length, List<BlockExtent> extents, CancellationToken cancellationToken = default)
    {
        long end = Math.Min(offset + length, Size);
        int first = extents.Count;
        while (offset < end)
        {
            long next = Math.Min((offset / _extentSize + 1) * _extentSize, end);
            var flags = _catalog[offset / _extentSize] == Unallocated ? BlockExtentFlags.Hole | BlockExtentFlags.Zero : BlockExtentFlags.Data;
            if (!SingleLayerBlockStatus.Append(extents, first, next - offset, flags)) break;
            offset = next;
        }
        return ValueTask.CompletedTask;
    }

    public ValueTask GetAllocationDepthAsync(long offset, long length, List<StatusExtent> extents, CancellationToken cancellationToken = default) =>
        SingleLayerBlockStatus.AddAllocationDepth(length, extents);

    public ValueTask GetDirtyBitmapStatusAsync(string bitmap, long offset, long length, List<StatusExtent> extents, CancellationToken cancellationToken = default) =>
        throw new BlockDeviceException(BlockError.Invalid, $"{_file.Path}: bitmap \"{bitmap}\": {CheckBitmapExportable(bitmap)}");

    public string? CheckBitmapExportable(string bitmap) => "a Bochs image has no persistent bitmaps";

    public ValueTask CacheAsync(long offset, long length, CancellationToken cancellationToken = default) => default;

    public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, bool fua, CancellationToken cancellationToken = default) => ValueTask.FromException(ReadOnly());

    public ValueTask ZeroAsync(long offset, long length, ZeroFlags flags, CancellationToken cancellationToken = default) => ValueTask.FromException(ReadOnly());

    public ValueTask TrimAsync(long offset, long length, bool fua, CancellationToken cancellationToken = default) => ValueTask.FromException(ReadOnly());

    public ValueTask FlushAsync(CancellationToken cancellationToken = default) => default;

    public ValueTask DisposeAsync()
    {
        _file.Dispose();
        return default;
    }

    private BlockDeviceException ReadOnly() => new(BlockError.Permission, $"{_file.Path}: Bochs images are served read-only");

    private static long RoundUpToSector(long bytes) => (bytes + Sector - 1) / Sector * Sector;

    private static string Text(ReadOnlySpan<byte> field)
    {
        int nul = field.IndexOf((byte)0);
        return Encoding.ASCII.GetString(nul < 0 ? field : field[..nul]);
    }
}
