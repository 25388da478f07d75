using BenchmarkDotNet.Attributes;
using NbdQcow.Image;
using NbdQcow.Image.Qcow2.Format;

namespace NbdQcow.Perf.Micro;

/// <summary>
/// The qcow2 read path: decoding an L2 entry, and a whole 4 KiB read through <see cref="IBlockDevice"/>
/// (L1 -> L2 lookup -> pread from the page cache), read-only and writable (metadata lock taken).
/// </summary>
[MemoryDiagnoser]
public class Qcow2L2LookupBenchmarks
{
    private Qcow2TestImage _image = null!;
    private IBlockDevice _readOnly = null!;
    private IBlockDevice _writable = null!;
    private readonly byte[] _l2Table = new byte[64 * 1024];
    private readonly byte[] _buffer = GC.AllocateArray<byte>(4096, pinned: true);
    private int _next;

    [GlobalSetup]
    public void Setup()
    {
        _image = new Qcow2TestImage();
        _readOnly = ImageOpener.Open(_image.Path, new ImageOpenOptions { ReadOnly = true });
        _writable = ImageOpener.Open(_image.Path, new ImageOpenOptions { MaxDirtyAge = null });
        for (var i = 0; i < _l2Table.Length / 8; i++)
        {
            BigEndianTable.Set(_l2Table, i, L2Entry.Standard((i + 5L) << 16, copied: true).Raw);
        }
    }

    [GlobalCleanup]
    public async Task Cleanup()
    {
        await _readOnly.DisposeAsync();
        await _writable.DisposeAsync();
        _image.Dispose();
    }

    private long NextOffset()
    {
        var offsets = _image.Offsets;
        var offset = offsets[_next];
        _next = (_next + 1) % offsets.Length;
        return offset;
    }

    [Benchmark(Description = "decode + classify one L2 entry")]
    public long DecodeL2Entry()
    {
        var index = _next = (_next + 1) & (_l2Table.Length / 8 - 1);
        var entry = new L2Entry(BigEndianTable.Get(_l2Table, index));
        return entry.Classify(0, extendedL2: false, externalDataFile: false) == Qcow2ClusterKind.Normal ? entry.HostOffset : -1;
    }

    [Benchmark(Description = "qcow2 4 KiB read, read-only image (lookup + pread)")]
    public ValueTask ReadReadOnly() => _readOnly.ReadAsync(NextOffset(), _buffer);

    [Benchmark(Description = "qcow2 4 KiB read, writable image (lookup under metadata lock + pread)")]
    public ValueTask ReadWritable() => _writable.ReadAsync(NextOffset(), _buffer);
}
