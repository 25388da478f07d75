using Microsoft.Extensions.Time.Testing;
using NbdQcow.Cache;
using NbdQcow.HostIo;
using NbdQcow.Image;
using NbdQcow.Image.Raw;
using NbdQcow.Tests.Unit.HostIo;

namespace NbdQcow.Tests.Unit.Raw;

public sealed class RawImageTests : IDisposable
{
    private const long Size = 8 << 20;
    private readonly TempDirectory _temp = new();
    private CountingHostFile? _counted;

    public void Dispose() => _temp.Dispose();

    private async Task<IBlockDevice> OpenAsync(CacheMode mode, TimeSpan? maxDirtyAge = null, TimeProvider? time = null, bool readOnly = false)
    {
        var path = _temp.File(Guid.NewGuid().ToString("N") + ".img");
        RawImageCreator.Create(path, Size);
        await Task.Yield();
        return ImageOpener.Open(path, new ImageOpenOptions
        {
            CacheMode = mode,
            ReadOnly = readOnly,
            MaxDirtyAge = maxDirtyAge,
            TimeProvider = time,
            HostFileFactory = (p, o) => _counted = new CountingHostFile(HostFile.Open(p, o)),
        });
    }

    private static byte[] Pattern(int length, byte seed)
    {
        var data = new byte[length];
        for (var i = 0; i < length; i++) data[i] = (byte)(seed + i * 7);
        return data;
    }

    [Theory]
    [InlineData(CacheMode.Writeback, true)]
    [InlineData(CacheMode.None, true)]
    [InlineData(CacheMode.Unsafe, true)]
    [InlineData(CacheMode.Writethrough, false)]
    [InlineData(CacheMode.DirectSync, false)]
    public async Task Flush_and_fua_are_advertised_in_every_mode_and_write_through_only_without_a_volatile_cache(CacheMode mode, bool volatileCache)
    {
        await using var image = await OpenAsync(mode);
        Assert.Equal(Size, image.Size);
        Assert.True(image.Features.HasFlag(BlockDeviceFeatures.Flush));
        Assert.True(image.Features.HasFlag(BlockDeviceFeatures.Fua));
        Assert.Equal(!volatileCache, image.Features.HasFlag(BlockDeviceFeatures.WriteThrough));
        var always = BlockDeviceFeatures.Trim | BlockDeviceFeatures.Zero | BlockDeviceFeatures.FastZero |
                     BlockDeviceFeatures.Cache | BlockDeviceFeatures.MultiConn | BlockDeviceFeatures.BlockStatus;
        Assert.Equal(always, image.Features & always);
        Assert.False(image.Features.HasFlag(BlockDeviceFeatures.ReadOnly));
    }

    [Theory]
    [InlineData(CacheMode.Writethrough)]
    [InlineData(CacheMode.DirectSync)]
    public async Task Writethrough_modes_sync_every_write_zero_and_trim_before_completing(CacheMode mode)
    {
        await using var image = await OpenAsync(mode);
        var flushesAtOpen = _counted!.Flushes;
        await image.WriteAsync(4096, Pattern(4096, 1), fua: false);
        Assert.Equal(flushesAtOpen + 1, _counted.Flushes);
        await image.ZeroAsync(0, 4096, ZeroFlags.None);
        await image.TrimAsync(8192, 4096, fua: false);
        Assert.Equal(flushesAtOpen + 3, _counted.Flushes);
        await image.FlushAsync();
        Assert.Equal(flushesAtOpen + 3, _counted.Flushes);
    }

    [Theory]
    [InlineData(CacheMode.Writeback)]
    [InlineData(CacheMode.None)]
    public async Task Writeback_modes_sync_on_flush_and_fua_only(CacheMode mode)
    {
        await using var image = await OpenAsync(mode);
        await image.WriteAsync(4096, Pattern(4096, 1), fua: false);
        await image.WriteAsync(100, Pattern(300, 2), fua: false);
        Assert.Equal(0, _counted!.Flushes);
        await image.FlushAsync();
        Assert.Equal(1, _counted.Flushes);
        await image.WriteAsync(8192, Pattern(4096, 3), fua: true);
        Assert.Equal(2, _counted.Flushes);
        await image.ZeroAsync(0, 4096, ZeroFlags.Fua);
        Assert.Equal(3, _counted.Flushes);
    }

    [Theory]
    [InlineData(CacheMode.Writeback)]
    [InlineData(CacheMode.None)]
    public async Task Concurrent_flushes_share_one_fdatasync(CacheMode mode)
    {
        const int Flushes = 8;
        await using var image = await OpenAsync(mode);
        await image.WriteAsync(0, Pattern(4096, 1), fua: false);
        // The first fdatasync waits until every other FLUSH has been asked for: those must wait for it and find their
        // changes covered, not each run an fdatasync of their own.
        using var held = new HeldFirstSync(_counted!);
        var running = Task.Run(() => image.FlushAsync().AsTask());
        held.WaitUntilHeld();
        var others = new Task[Flushes - 1];
        for (var i = 0; i < others.Length; i++) others[i] = image.FlushAsync().AsTask();
        held.Release();
        await running;
        await Task.WhenAll(others);
        Assert.Equal(1, _counted!.Flushes);
    }

    [Theory]
    [InlineData(CacheMode.Writethrough)]
    [InlineData(CacheMode.DirectSync)]
    public async Task Concurrent_writes_in_write_through_modes_share_an_fdatasync(CacheMode mode)
    {
        const int Writes = 8;
        await using var image = await OpenAsync(mode);
        var flushesAtOpen = _counted!.Flushes;
        var writesAtOpen = _counted.Writes;
        // The first write's fdatasync is held while the others complete on the host: their syncs must wait for it and
        // then share one more, not run one fdatasync per write.
        using var held = new HeldFirstSync(_counted);
        var running = Task.Run(() => image.WriteAsync(0, Pattern(4096, 1), fua: false).AsTask());
        held.WaitUntilHeld();
        var others = new Task[Writes - 1];
        for (var i = 0; i < others.Length; i++)
        {
            var offset = (i + 1) * 4096L;
            var data = Pattern(4096, (byte)(i + 2));
            others[i] = Task.Run(() => image.WriteAsync(offset, data, fua: false).AsTask());
        }
        // Every other write reaches the host while the sync is held; none may complete before it does.
        Assert.True(SpinWait.SpinUntil(() => Volatile.Read(ref _counted.Writes) >= writesAtOpen + Writes, TimeSpan.FromSeconds(30)), "writes did not reach the host");
        await Task.WhenAny(Task.WhenAll(others), Task.Delay(TimeSpan.FromMilliseconds(100)));
        Assert.DoesNotContain(others, t => t.IsCompleted);
        held.Release();
        await running;
        await Task.WhenAll(others);
        Assert.InRange(_counted.Flushes - flushesAtOpen, 2, 4);
    }

    [Fact]
    public async Task Unsafe_acknowledges_flush_and_fua_without_syncing()
    {
        await using var image = await OpenAsync(CacheMode.Unsafe);
        await image.WriteAsync(0, Pattern(4096, 1), fua: true);
        await image.FlushAsync();
        Assert.Equal(0, _counted!.Flushes);
    }

    [Theory]
    [InlineData(CacheMode.Writeback)]
    [InlineData(CacheMode.None)]
    [InlineData(CacheMode.Unsafe)]
    public async Task Max_dirty_age_syncs_a_never_flushed_write_once_it_is_older_than_the_bound(CacheMode mode)
    {
        var time = new FakeTimeProvider();
        await using var image = await OpenAsync(mode, TimeSpan.FromSeconds(1), time);
        await image.WriteAsync(0, Pattern(4096, 1), fua: false);
        time.Advance(TimeSpan.FromMilliseconds(900));
        Assert.Equal(0, _counted!.Flushes);
        time.Advance(TimeSpan.FromMilliseconds(100));
        Assert.Equal(1, _counted.Flushes);
        time.Advance(TimeSpan.FromSeconds(5));
        Assert.Equal(1, _counted.Flushes);
    }

    [Fact]
    public async Task Max_dirty_age_off_never_syncs_on_its_own()
    {
        var time = new FakeTimeProvider();
        await using var image = await OpenAsync(CacheMode.Writeback, maxDirtyAge: null, time);
        await image.WriteAsync(0, Pattern(4096, 1), fua: false);
        time.Advance(TimeSpan.FromHours(1));
        Assert.Equal(0, _counted!.Flushes);
    }

    [Theory]
    [InlineData(CacheMode.Writeback)]
    [InlineData(CacheMode.DirectSync)]
    public async Task Writes_read_back_and_dispose_syncs(CacheMode mode)
    {
        var image = await OpenAsync(mode);
        var data = Pattern(10000, 5);
        await image.WriteAsync(12345, data, fua: false);
        var read = new byte[10000];
        await image.ReadAsync(12345, read);
        Assert.Equal(data, read);
        var before = _counted!.Flushes;
        await image.DisposeAsync();
        Assert.Equal(before + 1, _counted.Flushes);
    }

    [Fact]
    public async Task Block_status_reports_holes_as_hole_and_zero_and_written_data_as_data()
    {
        await using var image = await OpenAsync(CacheMode.Writeback);
        await image.WriteAsync(1 << 20, Pattern(1 << 20, 9), fua: false);
        var extents = new List<BlockExtent>();
        await image.GetBlockStatusAsync(0, Size, extents);
        Assert.Equal(
            [new BlockExtent(1 << 20, BlockExtentFlags.Hole | BlockExtentFlags.Zero),
             new BlockExtent(1 << 20, BlockExtentFlags.Data),
             new BlockExtent(Size - (2 << 20), BlockExtentFlags.Hole | BlockExtentFlags.Zero)],
            extents);
    }

    [Theory]
    [InlineData(ZeroFlags.None)]
    [InlineData(ZeroFlags.NoHole)]
    [InlineData(ZeroFlags.FastZero)]
    public async Task Zero_makes_the_range_read_as_zero_and_leaves_neighbours(ZeroFlags flags)
    {
        await using var image = await OpenAsync(CacheMode.None);
        await image.WriteAsync(0, Pattern(1 << 20, 4), fua: false);
        await image.ZeroAsync(1000, 70000, flags);
        var read = new byte[1 << 20];
        await image.ReadAsync(0, read);
        var expected = Pattern(1 << 20, 4);
        Array.Clear(expected, 1000, 70000);
        Assert.Equal(expected, read);
    }

    [Fact]
    public async Task Zero_without_no_hole_deallocates_whole_blocks()
    {
        await using var image = await OpenAsync(CacheMode.Writeback);
        await image.WriteAsync(0, Pattern(1 << 20, 4), fua: false);
        await image.ZeroAsync(0, 1 << 20, ZeroFlags.None);
        var extents = new List<BlockExtent>();
        await image.GetBlockStatusAsync(0, 1 << 20, extents);
        Assert.Equal([new BlockExtent(1 << 20, BlockExtentFlags.Hole | BlockExtentFlags.Zero)], extents);
    }

    [Fact]
    public async Task Trim_punches_a_hole()
    {
        await using var image = await OpenAsync(CacheMode.Writeback);
        await image.WriteAsync(0, Pattern(1 << 20, 4), fua: false);
        await image.TrimAsync(0, 1 << 20, fua: false);
        Assert.True(_counted!.Punches >= 1);
        var read = new byte[1 << 20];
        await image.ReadAsync(0, read);
        Assert.All(read, b => Assert.Equal(0, b));
    }

    [Fact]
    public async Task Read_only_image_refuses_writes_with_permission_error()
    {
        await using var image = await OpenAsync(CacheMode.Writeback, readOnly: true);
        Assert.True(image.Features.HasFlag(BlockDeviceFeatures.ReadOnly));
        var error = await Assert.ThrowsAsync<BlockDeviceException>(async () => await image.WriteAsync(0, new byte[512], false));
        Assert.Equal(BlockError.Permission, error.Error);
    }

    [Fact]
    public void Creator_makes_a_sparse_file_and_refuses_to_overwrite()
    {
        var path = _temp.File("created.img");
        RawImageCreator.Create(path, 1L << 30);
        var info = new FileInfo(path);
        Assert.Equal(1L << 30, info.Length);
        Assert.Throws<IOException>(() => RawImageCreator.Create(path, 4096));
        Assert.Equal(1L << 30, new FileInfo(path).Length);
    }

    [Fact]
    public void Opener_probes_qcow2_magic_and_treats_anything_else_as_raw()
    {
        var qcow = _temp.File("magic.img");
        File.WriteAllBytes(qcow, [(byte)'Q', (byte)'F', (byte)'I', 0xfb, 0, 0, 0, 3]);
        Assert.Equal("qcow2", ImageOpener.ProbeFormat(qcow));
        var raw = _temp.File("raw.img");
        File.WriteAllBytes(raw, [(byte)'Q', (byte)'F', (byte)'I', 0xfa]);
        Assert.Equal("raw", ImageOpener.ProbeFormat(raw));
        var empty = _temp.File("empty.img");
        File.WriteAllBytes(empty, []);
        Assert.Equal("raw", ImageOpener.ProbeFormat(empty));
    }
}
