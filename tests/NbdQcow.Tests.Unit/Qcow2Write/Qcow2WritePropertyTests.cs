using NbdQcow.HostIo;
using NbdQcow.Image;
using NbdQcow.Image.Qcow2;

namespace NbdQcow.Tests.Unit.Qcow2Write;

/// <summary>
/// Random write/zero/trim/flush sequences (fixed seeds) against an in-memory model of the disk, read back
/// through the engine during the run, then checked with qemu-img check (no errors, no leaks) and qemu-img
/// compare against a raw file holding the model.
/// </summary>
public sealed class Qcow2WritePropertyTests
{
    public static TheoryData<string, int, string[], int, int> Variants => new()
    {
        // name, cluster size, qemu-img -o options (empty: nbdqcow's own creator), virtual MiB, operations
        { "512B clusters (refcount table grows)", 512, [], 12, 400 },
        { "64KiB clusters", 65536, [], 64, 300 },
        { "2MiB clusters", 2 << 20, [], 64, 120 },
        { "extended L2 64KiB", 65536, ["extended_l2=on", "cluster_size=65536"], 32, 300 },
        { "extended L2 2MiB", 2 << 20, ["extended_l2=on", "cluster_size=2097152"], 64, 120 },
        { "refcount 1 bit", 4096, ["refcount_bits=1", "cluster_size=4096"], 8, 300 },
        { "refcount 2 bits", 4096, ["refcount_bits=2", "cluster_size=4096"], 8, 200 },
        { "refcount 4 bits", 4096, ["refcount_bits=4", "cluster_size=4096"], 8, 150 },
        { "refcount 8 bits", 4096, ["refcount_bits=8", "cluster_size=4096"], 8, 200 },
        { "refcount 32 bits", 8192, ["refcount_bits=32", "cluster_size=8192"], 8, 150 },
        { "refcount 64 bits 1KiB", 1024, ["refcount_bits=64", "cluster_size=1024"], 8, 300 },
        { "v2 (compat 0.10)", 65536, ["compat=0.10"], 32, 200 },
        { "odd virtual size", 65536, [], -1, 200 },
    };

    [Theory]
    [MemberData(nameof(Variants))]
    public async Task Random_operations_match_the_model_and_qemu_img_calls_the_image_clean(string name, int clusterSize, string[] qemuOptions, int sizeMiB, int operations)
    {
        using var dir = new TempDirectory();
        var image = dir.File("disk.qcow2");
        long size = sizeMiB > 0 ? (long)sizeMiB << 20 : (5L << 20) + 512 * 7;
        if (qemuOptions.Length == 0)
            Qcow2Creator.Create(image, new Qcow2CreateOptions { Size = size, ClusterSize = clusterSize });
        else
            QemuImgTool.Create(image, size.ToString(), qemuOptions);
        var model = new byte[size];
        await RunWorkloadAsync(image, model, clusterSize, operations, seed: name.GetHashCode(StringComparison.Ordinal) & 0xffff, hasBacking: false);
        var raw = dir.File("reference.raw");
        File.WriteAllBytes(raw, model);
        QemuImgTool.AssertClean(image);
        QemuImgTool.AssertSameAs(image, raw);
    }

    [Theory]
    [InlineData(65536, false)]
    [InlineData(65536, true)]
    [InlineData(512, false)]
    public async Task Overlay_on_a_backing_file_matches_the_model_and_leaves_the_backing_file_unchanged(int clusterSize, bool extendedL2)
    {
        using var dir = new TempDirectory();
        var backing = dir.File("base.raw");
        long size = 8L << 20;
        var model = new byte[size];
        var random = new Random(42);
        // Backing data everywhere except a few holes, so COW, zero and trim have something to hide.
        random.NextBytes(model);
        Array.Clear(model, 1 << 20, 1 << 20);
        File.WriteAllBytes(backing, model);
        var backingHash = Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(model));
        var image = dir.File("overlay.qcow2");
        if (extendedL2)
            QemuImgTool.Create(image, size.ToString(), "extended_l2=on", $"cluster_size={clusterSize}", "backing_file=base.raw", "backing_fmt=raw");
        else
            Qcow2Creator.Create(image, new Qcow2CreateOptions { Size = size, ClusterSize = clusterSize, BackingFile = "base.raw" });
        await RunWorkloadAsync(image, model, clusterSize, 250, seed: 7 + clusterSize, hasBacking: true);
        var raw = dir.File("reference.raw");
        File.WriteAllBytes(raw, model);
        QemuImgTool.AssertClean(image);
        QemuImgTool.AssertSameAs(image, raw);
        Assert.Equal(backingHash, Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(File.ReadAllBytes(backing))));
    }

    /// <summary>Applies a random workload to the image and to the model; reads back through the engine as it goes.</summary>
    internal static async Task RunWorkloadAsync(string image, byte[] model, int clusterSize, int operations, int seed, bool hasBacking,
        ImageOpenOptions? options = null)
    {
        var random = new Random(seed);
        long size = model.Length;
        var device = Qcow2Image.Open(image, options ?? new ImageOpenOptions { MaxDirtyAge = null }, HostFile.Open);
        try
        {
            for (int op = 0; op < operations; op++)
            {
                int kind = random.Next(100);
                (long offset, int length) = RandomRange(random, size, clusterSize);
                if (kind < 55)
                {
                    var data = new byte[length];
                    random.NextBytes(data);
                    if (random.Next(4) == 0) Array.Clear(data, 0, data.Length / 2); // partly zero data
                    await device.WriteAsync(offset, data, fua: random.Next(20) == 0);
                    data.CopyTo(model, offset);
                }
                else if (kind < 70)
                {
                    var flags = random.Next(3) switch { 0 => ZeroFlags.NoHole, 1 => ZeroFlags.Fua, _ => ZeroFlags.None };
                    await device.ZeroAsync(offset, length, flags);
                    Array.Clear(model, (int)offset, length);
                }
                else if (kind < 80)
                {
                    await device.TrimAsync(offset, length, fua: false);
                    // Whole clusters in the range read as zero afterwards; partial clusters keep their data.
                    long first = (offset + clusterSize - 1) / clusterSize * clusterSize;
                    long end = Math.Min((offset + length) / clusterSize * clusterSize, size / clusterSize * clusterSize);
                    if (end > first) Array.Clear(model, (int)first, (int)(end - first));
                }
                else if (kind < 85)
                {
                    await device.FlushAsync();
                }
                else
                {
                    var buffer = new byte[length];
                    await device.ReadAsync(offset, buffer);
                    if (!buffer.AsSpan().SequenceEqual(model.AsSpan((int)offset, length)))
                        Assert.Fail($"operation {op}: read of 0x{offset:x}+{length} differs from the model (seed {seed}, backing {hasBacking})");
                }
            }
            var all = new byte[size];
            await device.ReadAsync(0, all);
            Assert.True(all.AsSpan().SequenceEqual(model), "full read-back differs from the model before close");
        }
        finally
        {
            await device.DisposeAsync();
        }
    }

    private static (long Offset, int Length) RandomRange(Random random, long size, int clusterSize)
    {
        int length;
        long offset;
        switch (random.Next(4))
        {
            case 0: // whole clusters
                int clusters = random.Next(1, 5);
                length = (int)Math.Min(clusters * (long)clusterSize, size);
                offset = random.NextInt64(0, size / clusterSize) * clusterSize;
                break;
            case 1: // small, sector aligned
                length = 512 * random.Next(1, 17);
                offset = random.NextInt64(0, size / 512) * 512;
                break;
            default: // anything
                length = random.Next(1, Math.Min(3 * clusterSize + 1000, 600_000));
                offset = random.NextInt64(0, size);
                break;
        }
        length = (int)Math.Min(length, size - offset);
        if (length <= 0) { offset = 0; length = (int)Math.Min(512, size); }
        return (offset, length);
    }
}
