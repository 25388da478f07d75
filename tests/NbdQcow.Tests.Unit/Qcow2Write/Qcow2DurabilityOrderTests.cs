using NbdQcow.Cache;
using NbdQcow.HostIo;
using NbdQcow.Image;
using NbdQcow.Image.Qcow2;
using NbdQcow.Image.Qcow2.Format;
using NbdQcow.Tests.Unit.MetadataCache;

namespace NbdQcow.Tests.Unit.Qcow2Write;

/// <summary>
/// The order of writes and barriers the engine issues, seen through a recording in-memory host file whose
/// "durable" view is what a power loss would leave; durable views are checked with qemu-img.
/// </summary>
public sealed class Qcow2DurabilityOrderTests
{
    private sealed class Harness : IAsyncDisposable
    {
        public readonly TempDirectory Dir = new();
        public RecordingMemoryHostFile File = null!;
        public Qcow2Image Image = null!;
        public string Path = null!;

        public static Harness Create(long size, int clusterSize, ImageOpenOptions options)
        {
            var h = new Harness();
            h.Path = h.Dir.File("disk.qcow2");
            Qcow2Creator.Create(h.Path, new Qcow2CreateOptions { Size = size, ClusterSize = clusterSize });
            h.File = new RecordingMemoryHostFile(System.IO.File.ReadAllBytes(h.Path));
            h.Image = Qcow2Image.Open(h.Path, options, (_, _) => h.File);
            return h;
        }

        /// <summary>Writes the durable view to a file and returns its path (a power-loss state).</summary>
        public string DurableState(string name)
        {
            var path = Dir.File(name);
            System.IO.File.WriteAllBytes(path, File.DurableImage());
            return path;
        }

        public long HostOf(long guestOffset)
        {
            var bytes = File.DurableImage();
            using var state = new RecordingMemoryHostFile(bytes);
            var header = Qcow2Header.Read(state);
            var g = Qcow2Geometry.FromHeader(header);
            var l1 = BigEndianTable.Read(state, (long)header.L1TableOffset, (int)header.L1Size);
            long l2 = (long)(l1[g.L1Index(guestOffset)] & L1Entry.OffsetMask);
            if (l2 == 0) return 0;
            var l2Table = BigEndianTable.Read(state, l2, g.L2Entries);
            return (long)(l2Table[g.L2Index(guestOffset)] & L2Entry.OffsetMask);
        }

        public async ValueTask DisposeAsync()
        {
            await Image.DisposeAsync();
            Dir.Dispose();
        }
    }

    private static readonly ImageOpenOptions Writeback = new() { MaxDirtyAge = null };

    [Fact]
    public async Task Flush_after_an_allocating_write_orders_data_and_refcounts_then_L2_then_L1_with_a_barrier_between()
    {
        await using var h = Harness.Create(64 << 20, 65536, Writeback);
        await h.Image.WriteAsync(1 << 20, new byte[4096].Select((_, i) => (byte)i).ToArray(), fua: false);
        var header = h.Image.Header;
        h.File.ClearLog();
        await h.Image.FlushAsync();
        var log = h.File.Log;
        long l1 = (long)header.L1TableOffset;
        long refblock = 2 * 65536; // creator layout: header, refcount table, refcount block, L1
        int refblockWrite = log.IndexOf($"W {refblock} 65536");
        int l1Write = log.IndexOf($"W {l1} 65536");
        var l1Entries = BigEndianTable.Read(h.File, l1, 1);
        long l2Offset = (long)(l1Entries[0] & L1Entry.OffsetMask);
        int l2Write = log.IndexOf($"W {l2Offset} 65536");
        Assert.True(refblockWrite >= 0 && l2Write >= 0 && l1Write >= 0, string.Join(", ", log));
        int firstBarrier = log.IndexOf("F");
        Assert.True(refblockWrite < firstBarrier && firstBarrier < l2Write, $"refcount block, barrier, L2: {string.Join(", ", log)}");
        Assert.Contains("F", log.GetRange(l2Write, l1Write - l2Write));
        Assert.Equal("F", log[^1]);
        Assert.Equal(3, log.Count(e => e == "F"));
        QemuImgTool.AssertClean(h.DurableState("after-flush.qcow2"));
    }

    [Fact]
    public async Task Freed_cluster_is_reused_only_after_the_change_that_freed_it_is_durable()
    {
        await using var h = Harness.Create(64 << 20, 65536, Writeback);
        var cluster = new byte[65536];
        Array.Fill(cluster, (byte)0xaa);
        await h.Image.WriteAsync(0, cluster, fua: false);
        await h.Image.FlushAsync();
        long first = h.HostOf(0);
        Assert.NotEqual(0, first);
        await h.Image.TrimAsync(0, 65536, fua: false);
        await h.Image.WriteAsync(5 * 65536, cluster, fua: false); // allocates while the trim is not durable
        await h.Image.FlushAsync();
        Assert.Equal(0, h.HostOf(0));
        Assert.NotEqual(first, h.HostOf(5 * 65536));
        await h.Image.WriteAsync(7 * 65536, cluster, fua: false); // the trim is durable now: its cluster may be reused
        await h.Image.FlushAsync();
        Assert.Equal(first, h.HostOf(7 * 65536));
        QemuImgTool.AssertClean(h.DurableState("reuse.qcow2"));
    }

    [Fact]
    public async Task Partial_write_to_an_empty_cluster_zeroes_it_in_the_file_system_and_writes_only_the_guest_bytes()
    {
        await using var h = Harness.Create(64 << 20, 65536, Writeback);
        var data = Enumerable.Range(0, 4096).Select(i => (byte)(i | 1)).ToArray();
        h.File.ClearLog();
        await h.Image.WriteAsync(3 * 65536 + 8192, data, fua: false);
        await h.Image.FlushAsync();
        long host = h.HostOf(3 * 65536);
        var log = h.File.Log;
        int zero = log.IndexOf($"Z {host} 65536");
        int write = log.IndexOf($"W {host + 8192} 4096");
        Assert.True(zero >= 0 && write > zero, string.Join(", ", log));
        Assert.DoesNotContain($"W {host} 65536", log);
        Assert.True(write < log.IndexOf("F"), $"data before the first barrier: {string.Join(", ", log)}");
        var cluster = new byte[65536];
        await h.Image.ReadAsync(3 * 65536, cluster);
        Assert.Equal(data, cluster[8192..12288]);
        Assert.Equal(-1, cluster.AsSpan(0, 8192).IndexOfAnyExcept((byte)0));
        Assert.Equal(-1, cluster.AsSpan(12288).IndexOfAnyExcept((byte)0));
        QemuImgTool.AssertClean(h.DurableState("partial.qcow2"));
    }

    [Fact]
    public async Task Partial_write_into_a_reused_cluster_reads_zero_around_the_guest_bytes()
    {
        await using var h = Harness.Create(64 << 20, 65536, Writeback);
        h.File.PunchHoleSupported = false; // the freed cluster keeps its old bytes on disk
        var old = new byte[65536];
        Array.Fill(old, (byte)0xee);
        await h.Image.WriteAsync(0, old, fua: false);
        await h.Image.FlushAsync();
        long freed = h.HostOf(0);
        await h.Image.TrimAsync(0, 65536, fua: false);
        await h.Image.FlushAsync();
        await h.Image.FlushAsync(); // the free is applied and durable: the cluster is free for reuse
        var data = new byte[512];
        Array.Fill(data, (byte)0x11);
        await h.Image.WriteAsync(9 * 65536 + 1024, data, fua: false);
        await h.Image.FlushAsync();
        Assert.Equal(freed, h.HostOf(9 * 65536));
        var cluster = new byte[65536];
        await h.Image.ReadAsync(9 * 65536, cluster);
        Assert.Equal(data, cluster[1024..1536]);
        Assert.Equal(-1, cluster.AsSpan(0, 1024).IndexOfAnyExcept((byte)0));
        Assert.Equal(-1, cluster.AsSpan(1536).IndexOfAnyExcept((byte)0));
        QemuImgTool.AssertClean(h.DurableState("reused.qcow2"));
    }

    [Theory]
    [InlineData(CacheMode.Writethrough, false)]
    [InlineData(CacheMode.Writeback, true)]
    public async Task Write_in_writethrough_or_with_FUA_is_durable_when_it_completes(CacheMode mode, bool fua)
    {
        await using var h = Harness.Create(16 << 20, 65536, new ImageOpenOptions { CacheMode = mode, MaxDirtyAge = null });
        var model = new byte[16 << 20];
        var random = new Random(11);
        for (int i = 0; i < 5; i++)
        {
            var data = new byte[random.Next(1, 150_000)];
            random.NextBytes(data);
            long offset = random.NextInt64(0, model.Length - data.Length);
            await h.Image.WriteAsync(offset, data, fua);
            data.CopyTo(model, offset);
            var state = h.DurableState($"state{i}.qcow2");
            var raw = h.Dir.File($"model{i}.raw");
            File.WriteAllBytes(raw, model);
            QemuImgTool.AssertClean(state);
            QemuImgTool.AssertSameAs(state, raw);
        }
    }

    [Fact]
    public async Task Unflushed_write_becomes_durable_within_the_max_dirty_age()
    {
        await using var h = Harness.Create(16 << 20, 65536, new ImageOpenOptions { MaxDirtyAge = TimeSpan.FromMilliseconds(50) });
        var data = new byte[100_000];
        new Random(12).NextBytes(data);
        await h.Image.WriteAsync(3 << 20, data, fua: false);
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (h.HostOf(3 << 20) == 0 && DateTime.UtcNow < deadline)
            await Task.Delay(20);
        await Task.Delay(100); // let the background flush finish its last barrier
        var model = new byte[16 << 20];
        data.CopyTo(model, 3 << 20);
        var raw = h.Dir.File("model.raw");
        File.WriteAllBytes(raw, model);
        var state = h.DurableState("aged.qcow2");
        QemuImgTool.AssertClean(state);
        QemuImgTool.AssertSameAs(state, raw);
    }

    [Fact]
    public async Task Unsafe_flush_writes_tables_to_the_OS_without_a_barrier()
    {
        await using var h = Harness.Create(16 << 20, 65536, new ImageOpenOptions { CacheMode = CacheMode.Unsafe, MaxDirtyAge = null });
        await h.Image.WriteAsync(0, new byte[4096].Select(_ => (byte)1).ToArray(), fua: false);
        int barriers = h.File.Barriers;
        h.File.ClearLog();
        await h.Image.FlushAsync();
        Assert.Equal(barriers, h.File.Barriers);
        Assert.Contains(h.File.Log, e => e.StartsWith("W ", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Refcount_table_grows_and_moves_when_the_image_outgrows_it()
    {
        using var dir = new TempDirectory();
        var image = dir.File("grow.qcow2");
        Qcow2Creator.Create(image, new Qcow2CreateOptions { Size = 24 << 20, ClusterSize = 512 });
        ulong before;
        using (var file = HostFile.Open(image, new HostFileOptions(true, false))) before = Qcow2Header.Read(file).RefcountTableOffset;
        var model = new byte[24 << 20];
        new Random(13).NextBytes(model);
        await using (var device = Qcow2Image.Open(image, Writeback, HostFile.Open))
            for (int i = 0; i < model.Length; i += 1 << 20)
                await device.WriteAsync(i, model.AsMemory(i, 1 << 20), fua: false);
        using (var file = HostFile.Open(image, new HostFileOptions(true, false)))
            Assert.NotEqual(before, Qcow2Header.Read(file).RefcountTableOffset);
        var raw = dir.File("model.raw");
        File.WriteAllBytes(raw, model);
        QemuImgTool.AssertClean(image);
        QemuImgTool.AssertSameAs(image, raw);
    }
}
