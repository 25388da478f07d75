using NbdQcow.Cache;
using NbdQcow.HostIo;
using NbdQcow.Image;
using NbdQcow.Image.Qcow2;
using NbdQcow.Tests.Unit.Raw;

namespace NbdQcow.Tests.Unit.Qcow2Write;

/// <summary>Client FLUSHes that arrive together share one fdatasync; a FLUSH with nothing new to sync costs none.</summary>
public sealed class Qcow2FlushCoalescingTests
{
    private static (Qcow2Image Image, CountingHostFile File) Open(TempDirectory dir, CacheMode mode = CacheMode.Writeback)
    {
        var path = dir.File("disk.qcow2");
        Qcow2Creator.Create(path, new Qcow2CreateOptions { Size = 64 << 20, ClusterSize = 65536 });
        CountingHostFile? counting = null;
        var image = Qcow2Image.Open(path, new ImageOpenOptions { CacheMode = mode, MaxDirtyAge = null },
            (p, o) => counting = new CountingHostFile(HostFile.Open(p, o)));
        return (image, counting!);
    }

    [Fact]
    public async Task Concurrent_flushes_waiting_for_a_slow_sync_are_covered_by_one_more_sync()
    {
        using var dir = new TempDirectory();
        var (image, file) = Open(dir);
        await using var _ = image;
        await image.WriteAsync(0, new byte[65536], fua: false);
        await image.FlushAsync();
        await image.WriteAsync(65536, new byte[4096], fua: false); // an overwrite would do too: something to sync
        file.BeforeFlush = () => Thread.Sleep(100);
        int before = file.Flushes;
        var flushes = Enumerable.Range(0, 8).Select(_ => Task.Run(async () => await image.FlushAsync())).ToArray();
        await Task.WhenAll(flushes);
        int syncs = file.Flushes - before;
        // The allocating write's flush needs ordering barriers plus the final sync; eight flushes one by one
        // would need at least eight final syncs.
        Assert.InRange(syncs, 1, 4);
    }

    [Fact]
    public async Task Flush_with_no_change_since_the_last_one_does_not_sync()
    {
        using var dir = new TempDirectory();
        var (image, file) = Open(dir);
        await using var _ = image;
        await image.WriteAsync(0, new byte[4096], fua: false);
        await image.FlushAsync();
        int before = file.Flushes;
        for (int i = 0; i < 5; i++) await image.FlushAsync();
        Assert.Equal(before, file.Flushes);
        await image.WriteAsync(0, new byte[4096], fua: false);
        await image.FlushAsync();
        Assert.Equal(before + 1, file.Flushes); // an overwrite of a COPIED cluster: data only, one sync
    }
    [Theory]
    [InlineData(CacheMode.Writethrough)]
    [InlineData(CacheMode.DirectSync)]
    public async Task Flush_in_write_through_modes_does_not_sync(CacheMode mode)
    {
        using var dir = new TempDirectory();
        var (image, file) = Open(dir, mode);
        await using var _ = image;
        await image.WriteAsync(0, new byte[65536], fua: false); // allocating: durable before it completes
        await image.WriteAsync(0, new byte[4096], fua: false); // overwrite: its data synced before it completes
        await image.TrimAsync(0, 65536, fua: false);
        int before = file.Flushes;
        for (int i = 0; i < 3; i++) await image.FlushAsync();
        Assert.Equal(before, file.Flushes);
    }
}
