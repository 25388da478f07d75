using NbdQcow.HostIo;
using NbdQcow.Image;
using NbdQcow.Image.Qcow2;

namespace NbdQcow.Tests.Unit.Qcow2Write;

/// <summary>
/// Many concurrent writers on the same unallocated clusters and L2 tables: nothing is allocated twice (qemu-img
/// check: no leaks, no errors), no write is lost (every sector holds its writer's pattern), and concurrent readers
/// see each sector either as before (zero or backing) or as written, never anything else.
/// </summary>
public sealed class Qcow2ConcurrentWriteTests
{
    private const int Sector = 512;

    [Theory]
    [InlineData(65536, false, false)]
    [InlineData(4096, false, true)]
    [InlineData(65536, true, true)]
    public async Task Concurrent_writers_to_overlapping_unallocated_clusters_lose_nothing_and_allocate_once(int clusterSize, bool extendedL2, bool withBacking)
    {
        using var dir = new TempDirectory();
        const int writers = 12;
        long size = 4L << 20;
        var before = new byte[size];
        var image = dir.File("disk.qcow2");
        var options = new List<string> { $"cluster_size={clusterSize}" };
        if (extendedL2) options.Add("extended_l2=on");
        if (withBacking)
        {
            new Random(5).NextBytes(before);
            File.WriteAllBytes(dir.File("base.raw"), before);
            options.Add("backing_file=base.raw");
            options.Add("backing_fmt=raw");
        }
        QemuImgTool.Create(image, size.ToString(), [.. options]);

        int sectors = (int)(size / Sector);
        var device = Qcow2Image.Open(image, new ImageOpenOptions { MaxDirtyAge = TimeSpan.FromMilliseconds(20) }, HostFile.Open);
        var expected = (byte[])before.Clone();
        var failures = new System.Collections.Concurrent.ConcurrentQueue<string>();
        using var stop = new CancellationTokenSource();
        try
        {
            // Writer w owns sectors s with s % writers == w; writes go in random order, in runs of 1..3 owned sectors
            // (so every write is partial within a cluster and neighbours race for the same allocation).
            var tasks = new List<Task>();
            for (int w = 0; w < writers; w++)
            {
                int writer = w;
                tasks.Add(Task.Run(async () =>
                {
                    var random = new Random(100 + writer);
                    var mine = Enumerable.Range(0, sectors).Where(s => s % writers == writer).OrderBy(_ => random.Next()).ToArray();
                    var buffer = new byte[Sector];
                    foreach (int s in mine)
                    {
                        Pattern(s, buffer);
                        await device.WriteAsync((long)s * Sector, buffer, fua: random.Next(50) == 0);
                        if (random.Next(200) == 0) await device.FlushAsync();
                    }
                }));
            }
            for (int s = 0; s < sectors; s++) Pattern(s, expected.AsSpan(s * Sector, Sector));
            var reader = Task.Run(async () =>
            {
                var random = new Random(9);
                var buffer = new byte[Sector];
                var pattern = new byte[Sector];
                while (!stop.IsCancellationRequested)
                {
                    int s = random.Next(sectors);
                    await device.ReadAsync((long)s * Sector, buffer);
                    Pattern(s, pattern);
                    if (!buffer.AsSpan().SequenceEqual(pattern) && !buffer.AsSpan().SequenceEqual(before.AsSpan(s * Sector, Sector)))
                        failures.Enqueue($"sector {s} read neither its old nor its new content");
                }
            });
            await Task.WhenAll(tasks).WaitAsync(TimeSpan.FromMinutes(3));
            stop.Cancel();
            await reader.WaitAsync(TimeSpan.FromMinutes(1));
            var all = new byte[size];
            await device.ReadAsync(0, all);
            Assert.True(all.AsSpan().SequenceEqual(expected), "a write was lost (read-back differs)");
        }
        finally
        {
            await device.DisposeAsync();
        }
        Assert.Empty(failures);
        var raw = dir.File("expected.raw");
        File.WriteAllBytes(raw, expected);
        QemuImgTool.AssertClean(image);
        QemuImgTool.AssertSameAs(image, raw);
    }

    private static void Pattern(int sector, Span<byte> destination)
    {
        for (int i = 0; i < destination.Length; i += 4)
            System.Buffers.Binary.BinaryPrimitives.WriteInt32LittleEndian(destination[i..], sector * 1000 + i + 1);
    }
}
