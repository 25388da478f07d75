using BenchmarkDotNet.Attributes;
using NbdQcow.Image;
using NbdQcow.Image.Qcow2;

namespace NbdQcow.Perf.Micro;

/// <summary>
/// The qcow2 write path, writeback mode, no flushes: a 4 KiB overwrite of an allocated (COPIED) cluster, which
/// touches no metadata, and a 4 KiB write into a fresh image, where every write allocates a 64 KiB cluster
/// (refcount, L2 update; an L2 table per 512 MiB). The allocating benchmark starts every iteration on a new
/// empty image, so each iteration measures the same number of allocations.
/// </summary>
[MemoryDiagnoser]
public class Qcow2WriteBenchmarks
{
    private const int AllocationsPerIteration = 2048;

    private Qcow2TestImage _allocated = null!;
    private IBlockDevice _overwrite = null!;
    private IBlockDevice? _empty;
    private string _emptyPath = null!;
    private readonly byte[] _data = GC.AllocateArray<byte>(4096, pinned: true);
    private int _next;
    private long _nextCluster;

    [GlobalSetup]
    public void Setup()
    {
        new Random(5).NextBytes(_data);
        _allocated = new Qcow2TestImage();
        _overwrite = ImageOpener.Open(_allocated.Path, new ImageOpenOptions { MaxDirtyAge = null });
        _emptyPath = Path.Combine(_allocated.Directory, "empty.qcow2");
    }

    [GlobalCleanup]
    public async Task Cleanup()
    {
        await _overwrite.DisposeAsync();
        if (_empty is not null)
        {
            await _empty.DisposeAsync();
        }
        _allocated.Dispose();
    }

    [IterationSetup(Target = nameof(AllocatingWrite))]
    public void NewEmptyImage()
    {
        _empty?.DisposeAsync().AsTask().GetAwaiter().GetResult();
        File.Delete(_emptyPath);
        Qcow2Creator.Create(_emptyPath, new Qcow2CreateOptions { Size = 64L << 30 });
        _empty = ImageOpener.Open(_emptyPath, new ImageOpenOptions { MaxDirtyAge = null });
        _nextCluster = 0;
    }

    [Benchmark(Description = "qcow2 4 KiB overwrite of an allocated cluster")]
    public ValueTask Overwrite()
    {
        var offsets = _allocated.Offsets;
        var offset = offsets[_next];
        _next = (_next + 1) % offsets.Length;
        return _overwrite.WriteAsync(offset, _data, fua: false);
    }

    [Benchmark(Description = "qcow2 4 KiB allocating write (new 64 KiB cluster each)")]
    [InvocationCount(AllocationsPerIteration, unrollFactor: 1)]
    public ValueTask AllocatingWrite()
    {
        // Spread over L2 tables the way random guest writes do: a stride of 4097 clusters crosses into a new
        // 512 MiB L2 range about every 8 writes.
        var cluster = _nextCluster++ * 4097 % (1L << 20);
        return _empty!.WriteAsync(cluster << 16, _data, fua: false);
    }
}
