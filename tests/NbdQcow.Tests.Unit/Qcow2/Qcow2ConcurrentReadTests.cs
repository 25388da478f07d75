using NbdQcow.HostIo;
using NbdQcow.Image;
using NbdQcow.Tests.Unit.HostIo;

namespace NbdQcow.Tests.Unit.Qcow2;

/// <summary>
/// Reads racing with writes, trims and flushes (which free and reuse host clusters) see each guest cluster's own
/// data or zeroes, never another cluster's data through a mapping that went stale while the read was in progress.
/// </summary>
public sealed class Qcow2ConcurrentReadTests
{
    [Fact]
    public async Task Reads_racing_with_trims_and_reallocation_never_return_another_clusters_data()
    {
        using var folder = new TempDirectory("unit", diskBacked: true);
        const int clusterSize = 4096;
        const int clusters = 64;
        QemuTools.Bash(folder.Path, $"qemu-img create -q -f qcow2 -o cluster_size={clusterSize} img.qcow2 {clusters * clusterSize}");
        string path = folder.File("img.qcow2");
        // Guest reads are 3000 bytes and pause before touching the file, so lookups go stale while the read waits.
        const int readLength = 3000;
        var options = new ImageOpenOptions
        {
            MaxDirtyAge = null,
            HostFileFactory = (p, o) => new SlowReadHostFile(HostFile.Open(p, o), readLength, TimeSpan.FromMilliseconds(2)),
        };
        await using (var image = ImageOpener.Open(path, options))
        {
            using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(4));
            var failures = new List<string>();
            async Task Writer(int seed)
            {
                var random = new Random(seed);
                var data = new byte[clusterSize];
                while (!stop.IsCancellationRequested)
                {
                    int c = random.Next(1, clusters);
                    switch (random.Next(4))
                    {
                        case 0:
                            await image.TrimAsync((long)c * clusterSize, clusterSize, fua: false);
                            break;
                        case 1:
                            await image.FlushAsync();
                            break;
                        default:
                            Array.Fill(data, (byte)c);
                            await image.WriteAsync((long)c * clusterSize, data, fua: false);
                            break;
                    }
                }
            }
            async Task Reader(int seed)
            {
                var random = new Random(seed);
                var buffer = new byte[readLength];
                while (!stop.IsCancellationRequested)
                {
                    int c = random.Next(1, clusters);
                    await image.ReadAsync((long)c * clusterSize + 100, buffer);
                    foreach (byte b in buffer)
                        if (b != 0 && b != c)
                        {
                            lock (failures) failures.Add($"cluster {c} read byte {b}");
                            break;
                        }
                }
            }
            var tasks = new List<Task>();
            for (int i = 0; i < 4; i++)
            {
                int seed = i;
                tasks.Add(Task.Run(() => Writer(seed)));
                tasks.Add(Task.Run(() => Reader(100 + seed)));
            }
            await Task.WhenAll(tasks).WaitAsync(TimeSpan.FromSeconds(60));
            Assert.Empty(failures);
        }
        QemuTools.Run("qemu-img", "check", path);
    }
}
