namespace NbdQcow.Tests.Interop.Infrastructure;

/// <summary>
/// Every qcow2 variant the read tests serve: versions, cluster sizes, refcount widths, odd and huge sizes,
/// compression, backing chains, extended L2, external data files and snapshots. Each image is built by qemu-img and
/// qemu-io with the same pattern layout scaled to its cluster size, so reads of partial clusters, zero clusters,
/// discarded clusters and data at the very end are all covered.
/// </summary>
public static class Qcow2VariantCatalog
{
    private const long Mib = 1 << 20;
    private const long DefaultSize = 64 * Mib;

    public static IReadOnlyList<Qcow2Variant> All { get; } =
    [
        Plain("v2-compat-0.10", "compat=0.10", 64 * 1024),
        Plain("v3-default-64k", null, 64 * 1024),
        Plain("cluster-512", "cluster_size=512", 512),
        Plain("cluster-4k", "cluster_size=4096", 4096),
        Plain("cluster-2m", "cluster_size=2097152", 2 * Mib),
        Plain("refcount-1-bit", "refcount_bits=1,cluster_size=4096", 4096),
        Plain("refcount-2-bit", "refcount_bits=2", 64 * 1024),
        Plain("refcount-4-bit", "refcount_bits=4", 64 * 1024),
        Plain("refcount-8-bit", "refcount_bits=8", 64 * 1024),
        Plain("refcount-32-bit", "refcount_bits=32", 64 * 1024),
        Plain("refcount-64-bit", "refcount_bits=64,cluster_size=4096", 4096),
        Plain("lazy-refcounts", "lazy_refcounts=on", 64 * 1024),
        Plain("odd-size-64k", null, 64 * 1024, DefaultSize + 2560),
        Plain("odd-size-2m", "cluster_size=2097152", 2 * Mib, DefaultSize + 3 * 512),
        Plain("odd-size-512", "cluster_size=512", 512, 10 * Mib + 1536),
        Plain("sparse-2tib", null, 64 * 1024, 2L << 40),
        Compressed("compressed-zlib-64k", "compression_type=zlib", 64 * 1024),
        Compressed("compressed-zstd-64k", "compression_type=zstd", 64 * 1024),
        Compressed("compressed-zlib-4k", "compression_type=zlib,cluster_size=4096", 4096),
        Compressed("compressed-zstd-2m", "compression_type=zstd,cluster_size=2097152", 2 * Mib),
        Compressed("compressed-zlib-512", "compression_type=zlib,cluster_size=512", 512),
        new("extended-l2-64k", "disk.qcow2", folder => BuildExtendedL2(folder, "extended_l2=on,cluster_size=65536", 65536)),
        new("extended-l2-2m", "disk.qcow2", folder => BuildExtendedL2(folder, "extended_l2=on,cluster_size=2097152", 2 * Mib)),
        new("backing-qcow2", "top.qcow2", BuildQcow2Backing),
        new("backing-raw", "top.qcow2", BuildRawBacking),
        new("backing-chain-raw-qcow2-qcow2", "top.qcow2", BuildThreeLevelChain),
        new("backing-extended-l2-overlay", "top.qcow2", BuildExtendedL2Overlay),
        new("external-data-file", "disk.qcow2", folder => BuildExternalData(folder, rawData: false)),
        new("external-data-file-raw", "disk.qcow2", folder => BuildExternalData(folder, rawData: true)),
        new("snapshot-current-state", "disk.qcow2", BuildSnapshots),
        new("snapshot-internal-s1", "disk.qcow2", BuildSnapshots) { Snapshot = "s1" },
    ];

    public static Qcow2Variant ByName(string name) =>
        All.FirstOrDefault(v => v.Name == name) ?? throw new ArgumentException($"no qcow2 variant named {name}");

    public static IEnumerable<object[]> Names => All.Select(v => new object[] { v.Name });

    /// <summary>
    /// The common pattern layout for cluster size <paramref name="c"/> in a <paramref name="size"/>-byte image:
    /// full and partial clusters, byte-unaligned writes, partial and whole-cluster zeroes, a discard, and the end.
    /// </summary>
    public static string[] PatternCommands(long c, long size, int seed = 0)
    {
        var p = (int offset) => $"0x{(0xa0 + seed * 0x10 + offset) & 0xff:x2}";
        return
        [
            $"write -P {p(1)} 0 {c + c / 2}",
            $"write -P {p(2)} {5 * c + 512} {2 * c + 1024}",
            $"write -P {p(3)} {11 * c + 333} 777",
            $"write -z {c / 2} {c}",
            $"write -P {p(4)} {16 * c} {4 * c}",
            $"write -z {17 * c} {2 * c}",
            $"discard {19 * c} {c}",
            $"write -P {p(5)} {size - 2 * c - 100} {2 * c + 100}",
        ];
    }

    private static Qcow2Variant Plain(string name, string? options, long clusterSize, long size = DefaultSize) =>
        new(name, "disk.qcow2", async folder =>
        {
            var image = Path.Combine(folder, "disk.qcow2");
            await QemuImage.CreateQcow2Async(image, size.ToString(), options);
            await QemuImage.IoAsync(image, "qcow2", PatternCommands(clusterSize, size));
            if (size > 1L << 40)
            {
                // A little data in the middle of a huge sparse image.
                await QemuImage.IoAsync(image, "qcow2", $"write -P 0x77 {(1L << 40) + 7 * clusterSize} {3 * clusterSize}");
            }
        });

    /// <summary>A pattern file compressed by qemu-img convert -c, then partly overwritten and zeroed uncompressed.</summary>
    private static Qcow2Variant Compressed(string name, string options, long clusterSize) =>
        new(name, "disk.qcow2", async folder =>
        {
            var raw = Path.Combine(folder, "source.raw");
            RawImageFile.CreateSparse(raw, DefaultSize);
            // Compressible data (runs) and incompressible data (random) in different clusters.
            await QemuImage.IoAsync(raw, "raw", PatternCommands(clusterSize, DefaultSize));
            RawImageFile.Write(raw, 30 * clusterSize, TestPattern.Bytes(30, (int)Math.Min(4 * clusterSize, 4 * Mib)));
            var image = Path.Combine(folder, "disk.qcow2");
            (await ToolRunner.RunAsync("qemu-img", ["convert", "-c", "-f", "raw", "-O", "qcow2", "-o", options, raw, image]))
                .EnsureSuccess();
            File.Delete(raw);
            await QemuImage.IoAsync(image, "qcow2", $"write -P 0x5e {6 * clusterSize + 100} 1000",
                $"write -z {16 * clusterSize} {clusterSize}");
        });

    private static async Task BuildExtendedL2(string folder, string options, long clusterSize)
    {
        var image = Path.Combine(folder, "disk.qcow2");
        var sub = clusterSize / 32;
        await QemuImage.CreateQcow2Async(image, DefaultSize.ToString(), options);
        await QemuImage.IoAsync(image, "qcow2", PatternCommands(clusterSize, DefaultSize));
        // Subcluster-granular writes, zeroes and discards inside otherwise untouched clusters.
        await QemuImage.IoAsync(image, "qcow2", $"write -P 0xc1 {24 * clusterSize + sub} {sub}",
            $"write -P 0xc2 {24 * clusterSize + 5 * sub + 7} {3 * sub}", $"write -z {24 * clusterSize + 6 * sub} {sub}",
            $"write -P 0xc3 {25 * clusterSize} {clusterSize}", $"discard {25 * clusterSize + 4 * sub} {2 * sub}",
            $"write -z {26 * clusterSize + 3 * sub} {5 * sub}");
    }

    private static async Task BuildQcow2Backing(string folder)
    {
        const long c = 64 * 1024;
        var basePath = Path.Combine(folder, "base.qcow2");
        await QemuImage.CreateQcow2Async(basePath, DefaultSize.ToString());
        await QemuImage.IoAsync(basePath, "qcow2", $"write -P 0x31 0 {DefaultSize / 2}",
            $"write -P 0x32 {DefaultSize - 8 * c} {8 * c}");
        var top = Path.Combine(folder, "top.qcow2");
        // Relative backing name: resolved against the overlay's folder.
        await QemuImage.CreateQcow2Async(top, DefaultSize.ToString(), backing: "base.qcow2", backingFormat: "qcow2");
        await QemuImage.IoAsync(top, "qcow2", PatternCommands(c, DefaultSize, seed: 1));
    }

    private static async Task BuildRawBacking(string folder)
    {
        const long c = 64 * 1024;
        var basePath = Path.Combine(folder, "base.raw");
        RawImageFile.CreateSparse(basePath, DefaultSize);
        RawImageFile.Write(basePath, 0, TestPattern.Bytes(40, (int)(3 * Mib)));
        RawImageFile.Write(basePath, 40 * Mib, TestPattern.Bytes(41, (int)Mib));
        var top = Path.Combine(folder, "top.qcow2");
        await QemuImage.CreateQcow2Async(top, DefaultSize.ToString(), backing: "base.raw", backingFormat: "raw");
        await QemuImage.IoAsync(top, "qcow2", PatternCommands(c, DefaultSize, seed: 2));
        await QemuImage.IoAsync(top, "qcow2", $"write -P 0x44 {40 * Mib + 4096} 512");
    }

    private static async Task BuildThreeLevelChain(string folder)
    {
        const long c = 64 * 1024;
        var basePath = Path.Combine(folder, "base.raw");
        RawImageFile.CreateSparse(basePath, DefaultSize);
        RawImageFile.Write(basePath, 0, TestPattern.Bytes(50, (int)(8 * Mib)));
        var mid = Path.Combine(folder, "mid.qcow2");
        await QemuImage.CreateQcow2Async(mid, DefaultSize.ToString(), "cluster_size=4096", "base.raw", "raw");
        await QemuImage.IoAsync(mid, "qcow2", PatternCommands(4096, DefaultSize, seed: 3));
        var top = Path.Combine(folder, "top.qcow2");
        await QemuImage.CreateQcow2Async(top, DefaultSize.ToString(), backing: "mid.qcow2", backingFormat: "qcow2");
        await QemuImage.IoAsync(top, "qcow2", $"write -P 0x61 {2 * c + 4096} {c}", $"write -z {4 * c} {c}",
            $"write -P 0x62 {DefaultSize - c} {c}");
    }

    private static async Task BuildExtendedL2Overlay(string folder)
    {
        const long c = 64 * 1024;
        const long sub = c / 32;
        var basePath = Path.Combine(folder, "base.qcow2");
        await QemuImage.CreateQcow2Async(basePath, DefaultSize.ToString());
        await QemuImage.IoAsync(basePath, "qcow2", $"write -P 0x71 0 {32 * c}");
        var top = Path.Combine(folder, "top.qcow2");
        await QemuImage.CreateQcow2Async(top, DefaultSize.ToString(), "extended_l2=on,cluster_size=65536",
            "base.qcow2", "qcow2");
        // Partial subclusters over backing data: qemu copies only the touched subclusters from the backing file.
        await QemuImage.IoAsync(top, "qcow2", $"write -P 0x72 {3 * c + sub + 100} {sub}",
            $"write -z {5 * c + 2 * sub} {3 * sub}", $"discard {6 * c} {c}", $"write -P 0x73 {40 * c + 9 * sub} {sub}");
    }

    private static async Task BuildExternalData(string folder, bool rawData)
    {
        const long c = 64 * 1024;
        var image = Path.Combine(folder, "disk.qcow2");
        // An absolute name: qemu 7.2 resolves a relative data_file against its working directory, not the image's.
        var options = $"data_file={Path.Combine(folder, "disk.data")}" + (rawData ? ",data_file_raw=on" : "");
        await QemuImage.CreateQcow2Async(image, DefaultSize.ToString(), options);
        await QemuImage.IoAsync(image, "qcow2", PatternCommands(c, DefaultSize, seed: 4));
    }

    private static async Task BuildSnapshots(string folder)
    {
        const long c = 64 * 1024;
        var image = Path.Combine(folder, "disk.qcow2");
        await QemuImage.CreateQcow2Async(image, DefaultSize.ToString());
        await QemuImage.IoAsync(image, "qcow2", PatternCommands(c, DefaultSize, seed: 5));
        (await ToolRunner.RunAsync("qemu-img", ["snapshot", "-c", "s1", image])).EnsureSuccess();
        // After the snapshot: overwrite (copy-on-write of shared clusters), zero and discard snapshot data.
        await QemuImage.IoAsync(image, "qcow2", $"write -P 0xe1 0 {c / 2}", $"write -z {16 * c} {c}",
            $"discard {5 * c} {3 * c}", $"write -P 0xe2 {30 * c} {2 * c}");
        (await ToolRunner.RunAsync("qemu-img", ["snapshot", "-c", "s2", image])).EnsureSuccess();
        await QemuImage.IoAsync(image, "qcow2", $"write -P 0xe3 {31 * c} {c}");
    }
}
