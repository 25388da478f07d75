using NbdQcow.Cache;
using NbdQcow.HostIo;
using NbdQcow.Image.Qcow2.Format;
using NbdQcow.Image.Raw;

namespace NbdQcow.Image.Qcow2.Recover;

/// <summary>
/// The output image: created fresh (qcow2 by <see cref="Qcow2Creator"/> or sparse raw) and written through the
/// project's own block devices, so a qcow2 output has consistent refcounts by construction. Writes one L2 table's
/// worth of guest clusters at a time, reading data (decompressing compressed clusters) from the damaged file.
/// </summary>
internal sealed class RecoveredImageWriter : IAsyncDisposable
{
    private readonly IBlockDevice _device;
    private readonly byte[] _cluster;
    private readonly byte[] _compressed;
    private readonly bool _zeroesMustBeWritten;

    private RecoveredImageWriter(IBlockDevice device, int clusterSize, bool zeroesMustBeWritten)
    {
        _device = device;
        _cluster = new byte[clusterSize];
        _compressed = new byte[clusterSize * 2 + 512];
        _zeroesMustBeWritten = zeroesMustBeWritten;
    }

    public long Size => _device.Size;

    public static RecoveredImageWriter Create(string path, RecoveryOutputFormat format, long virtualSize, Qcow2Geometry geometry,
        string? backingFile, string? backingFormat, ImageLocking locking)
    {
        var open = new ImageOpenOptions { CacheMode = CacheMode.Writeback, MaxDirtyAge = null, Locking = locking };
        if (format == RecoveryOutputFormat.Raw)
        {
            RawImageCreator.Create(path, (virtualSize + 511) & ~511L);
            return new RecoveredImageWriter(ImageOpener.Open(path, open with { Format = "raw" }), geometry.ClusterSize, false);
        }
        Qcow2Creator.Create(path, new Qcow2CreateOptions
        {
            Size = virtualSize,
            ClusterSize = geometry.ClusterSize,
            ExtendedL2 = geometry.ExtendedL2,
            BackingFile = backingFile,
            BackingFormat = backingFile is null ? null : backingFormat,
        });
        return new RecoveredImageWriter(ImageOpener.Open(path, open with { Format = "qcow2" }), geometry.ClusterSize, backingFile is not null);
    }

    /// <summary>Counts of what one table contributed.</summary>
    public readonly record struct TableCounts(long Data, long Compressed, long Zero, long Bytes);

    /// <summary>Writes the guest clusters mapped by the L2 table <paramref name="table"/> placed at L1 slot <paramref name="slot"/>.</summary>
    /// <param name="conflicts">Guest clusters whose claim on a contested host cluster lost (or was not decided) are not written.</param>
    public async Task<TableCounts> WriteTableAsync(DamagedImage image, string source, long slot, long tableOffset, byte[] table, MappingConflicts conflicts)
    {
        var g = image.Geometry;
        long data = 0, compressed = 0, zero = 0, bytes = 0;
        for (int j = 0; j < g.L2Entries; j++)
        {
            var entry = image.GetL2Entry(table, j);
            if (entry.Raw == 0 && entry.Bitmap == 0) continue;
            long guest = ((slot << g.L2Bits) + j) << g.ClusterBits;
            if (guest >= Size) break;
            int length = (int)Math.Min(g.ClusterSize, Size - guest);
            if (image.L2EntryProblem(entry) is not null) continue; // reported when the view was walked
            if (conflicts.Skips((slot << g.L2Bits) + j)) continue; // contested: in lost+found with every candidate
            if (entry.IsCompressed)
            {
                if (await WriteCompressedAsync(image, source, entry, guest, length)) { compressed++; bytes += length; }
                continue;
            }
            if (!g.ExtendedL2)
            {
                if (entry.HasZeroFlag) { await ZeroAsync(guest, length); zero++; }
                else if (entry.HostOffset != 0) { ReadHostCluster(image, source, entry.HostOffset, guest, length); await WriteAsync(guest, _cluster.AsMemory(0, length)); data++; bytes += length; }
                continue;
            }
            bool readDone = false;
            bool wroteData = false, wroteZero = false;
            for (int s = 0; s < g.SubclustersPerCluster; s++)
            {
                long sub = guest + ((long)s << g.SubclusterBits);
                if (sub >= Size) break;
                int subLength = (int)Math.Min(g.SubclusterSize, Size - sub);
                switch (entry.Classify(s, extendedL2: true, externalDataFile: false))
                {
                    case Qcow2ClusterKind.Normal:
                        if (!readDone) { ReadHostCluster(image, source, entry.HostOffset, guest, NeededBytes(entry, g, length)); readDone = true; }
                        await WriteAsync(sub, _cluster.AsMemory(s << g.SubclusterBits, subLength));
                        wroteData = true;
                        bytes += subLength;
                        break;
                    case Qcow2ClusterKind.Zero:
                    case Qcow2ClusterKind.ZeroWithHostCluster:
                        await ZeroAsync(sub, subLength);
                        wroteZero = true;
                        break;
                }
            }
            if (wroteData) data++;
            else if (wroteZero) zero++;
        }
        return new TableCounts(data, compressed, zero, bytes);
    }

    /// <summary>Bytes of the host cluster that hold data: up to the end of its last allocated subcluster (qemu writes no more).</summary>
    private static int NeededBytes(L2Entry entry, Qcow2Geometry g, int length)
    {
        uint allocated = entry.AllocatedSubclusters & ~entry.ZeroSubclusters;
        int last = 31 - System.Numerics.BitOperations.LeadingZeroCount(allocated);
        return Math.Min(length, (last + 1) << g.SubclusterBits);
    }

    /// <param name="needed">Bytes that must come from the file; a file that ends before them is damage.</param>
    private void ReadHostCluster(DamagedImage image, string source, long host, long guest, int needed)
    {
        image.ReadData(host, _cluster); // bytes past the end of the file read as zero
        long missing = host + needed - image.FileLength;
        if (missing > 0)
            image.Report.Loss("data", $"{source}: data cluster 0x{host:x} for guest 0x{guest:x} is cut short by the end of the file; its last {missing} bytes read as zero");
        image.Report.Range(guest + needed - missing, missing, "lost", $"data cluster 0x{host:x} is cut short by the end of the file");
    }

    private async Task<bool> WriteCompressedAsync(DamagedImage image, string source, L2Entry entry, long guest, int length)
    {
        var d = entry.Compressed(image.Geometry.ClusterBits);
        int available = (int)Math.Min(d.CompressedLength, Math.Max(0, image.FileLength - d.HostOffset));
        int take = Math.Min(available, _compressed.Length);
        image.File.Read(d.HostOffset, _compressed.AsSpan(0, take));
        if (!ClusterDecompressor.TryDecompress(image.Header.CompressionType, _compressed, take, _cluster))
        {
            image.Report.Loss("compressed", $"{source}: compressed cluster at 0x{d.HostOffset:x} ({d.CompressedLength} bytes) for guest 0x{guest:x} does not decompress; left unmapped");
            return false;
        }
        await WriteAsync(guest, _cluster.AsMemory(0, length));
        return true;
    }

    private async ValueTask WriteAsync(long guest, ReadOnlyMemory<byte> data)
    {
        // A fresh image already reads as zero; without a backing file zero data needs no space.
        if (!_zeroesMustBeWritten && !data.Span.ContainsAnyExcept((byte)0)) return;
        await _device.WriteAsync(guest, data, fua: false);
    }

    private async ValueTask ZeroAsync(long guest, int length)
    {
        if (_zeroesMustBeWritten) await _device.ZeroAsync(guest, length, ZeroFlags.None);
    }

    public async Task FlushAsync() => await _device.FlushAsync();

    public ValueTask DisposeAsync() => _device.DisposeAsync();
}
