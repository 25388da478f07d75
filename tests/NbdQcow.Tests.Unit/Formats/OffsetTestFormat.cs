using System.Buffers.Binary;
using NbdQcow.HostIo;
using NbdQcow.Image;

namespace NbdQcow.Tests.Unit.Formats;

/// <summary>
/// A format that exists only in this test assembly: the magic "NBQTEST\0", the size (u64, little-endian) at 8,
/// the disk from offset 4096 on. Registered at run time, it shows that a format is one class plus one registration.
/// </summary>
internal sealed class OffsetTestFormat : ImageFormat
{
    public const string FormatName = "nbqtest";
    public const int DataOffset = 4096;
    private static readonly byte[] Magic = "NBQTEST\0"u8.ToArray();

    public override string Name => FormatName;

    public override ImageFormatFeatures Features => ImageFormatFeatures.None;

    public override int ProbeLength => Magic.Length;

    public override bool Probe(ReadOnlySpan<byte> head) => head.SequenceEqual(Magic);

    public override IBlockDevice Open(string path, ImageOpenOptions options)
    {
        var file = LockedHostFile.Open(options.HostFileFactory ?? HostFile.Open, path, new HostFileOptions(true, false), options.Locking);
        Span<byte> header = stackalloc byte[16];
        file.Read(0, header);
        return new Device(file, BinaryPrimitives.ReadInt64LittleEndian(header[8..]));
    }

    /// <summary>Writes an image of this format holding <paramref name="disk"/>.</summary>
    public static void Write(string path, byte[] disk)
    {
        var bytes = new byte[DataOffset + disk.Length];
        Magic.CopyTo(bytes, 0);
        BinaryPrimitives.WriteInt64LittleEndian(bytes.AsSpan(8), disk.Length);
        disk.CopyTo(bytes, DataOffset);
        File.WriteAllBytes(path, bytes);
    }

    /// <summary>Registers the format once per test run.</summary>
    public static void EnsureRegistered()
    {
        lock (Magic)
        {
            if (ImageFormats.Find(FormatName) is null)
                ImageFormats.Register(new OffsetTestFormat());
        }
    }

    private sealed class Device(IHostFile file, long size) : IBlockDevice
    {
        public long Size => size;

        public BlockDeviceFeatures Features => BlockDeviceFeatures.ReadOnly | BlockDeviceFeatures.BlockStatus;

        public BlockSizeHints BlockSizes => new(1, 512, 32u << 20);

        public ValueTask ReadAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            file.Read(DataOffset + offset, buffer.Span);
            return default;
        }

        public ValueTask GetBlockStatusAsync(long offset, long length, List<BlockExtent> extents, CancellationToken cancellationToken = default)
        {
            extents.Add(new BlockExtent(length, BlockExtentFlags.Data));
            return default;
        }

        public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, bool fua, CancellationToken cancellationToken = default) => throw ReadOnly();

        public ValueTask ZeroAsync(long offset, long length, ZeroFlags flags, CancellationToken cancellationToken = default) => throw ReadOnly();

        public ValueTask TrimAsync(long offset, long length, bool fua, CancellationToken cancellationToken = default) => throw ReadOnly();

        public ValueTask FlushAsync(CancellationToken cancellationToken = default) => default;

        public ValueTask CacheAsync(long offset, long length, CancellationToken cancellationToken = default) => default;

        public ValueTask DisposeAsync()
        {
            file.Dispose();
            return default;
        }

        private static BlockDeviceException ReadOnly() => new(BlockError.Permission, "read-only test format");
    }
}
