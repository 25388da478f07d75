namespace NbdQcow.Tests.Interop.Infrastructure;

/// <summary>
/// An empty (or backing-only) qcow2 image for the write workloads: built in a folder, with its cluster size (the
/// alignment of the workload's trims) and, for an overlay, the backing file that must stay unchanged.
/// </summary>
public sealed record FreshQcow2Image(string Name, long ClusterSize, long Size, Func<string, Task<FreshQcow2Image.Built>> Build)
{
    /// <summary>The image path and, for an overlay, its backing file (null otherwise).</summary>
    public sealed record Built(string ImagePath, string? BackingPath);

    public override string ToString() => Name;

    private const long Mib = 1 << 20;

    public static IReadOnlyList<FreshQcow2Image> All { get; } =
    [
        Qemu("cluster-512", 512, 32 * Mib, "cluster_size=512"),
        Qemu("cluster-64k", 65536, 64 * Mib, null),
        Qemu("cluster-2m", 2 * Mib, 64 * Mib, "cluster_size=2097152"),
        Qemu("extended-l2-64k", 65536, 64 * Mib, "extended_l2=on,cluster_size=65536"),
        Qemu("v2-compat-0.10", 65536, 64 * Mib, "compat=0.10"),
        Qemu("refcount-1-bit-4k", 4096, 32 * Mib, "refcount_bits=1,cluster_size=4096"),
        new("nbdqcow-create-64k", 65536, 64 * Mib, async folder =>
        {
            // The project's own creator: what qemu-img check must accept after the workload.
            var image = Path.Combine(folder, "created.qcow2");
            await ServerProcess.EnsureLauncherBuiltAsync();
            (await ToolRunner.RunAsync(RepositoryRoot.Launcher, ["create", image, "64M"])).EnsureSuccess();
            return new Built(image, null);
        }),
        new("nbdqcow-create-overlay-4k", 4096, 64 * Mib, async folder =>
        {
            var backing = Path.Combine(folder, "base.qcow2");
            await QemuImage.CreateQcow2Async(backing, (64 * Mib).ToString());
            await QemuImage.IoAsync(backing, "qcow2", "write -P 0x4e 0 20M", "write -P 0x4f 50M 2M");
            var image = Path.Combine(folder, "overlay.qcow2");
            await ServerProcess.EnsureLauncherBuiltAsync();
            (await ToolRunner.RunAsync(RepositoryRoot.Launcher, ["create", image, "--backing", "base.qcow2",
                "--cluster-size", "4096"])).EnsureSuccess();
            return new Built(image, backing);
        }),
        new("overlay-on-qcow2-backing", 65536, 64 * Mib, async folder =>
        {
            var backing = Path.Combine(folder, "base.qcow2");
            await QemuImage.CreateQcow2Async(backing, (64 * Mib).ToString());
            await QemuImage.IoAsync(backing, "qcow2", "write -P 0x3c 0 24M", "write -P 0x3d 40M 8M");
            var image = Path.Combine(folder, "overlay.qcow2");
            await QemuImage.CreateQcow2Async(image, (64 * Mib).ToString(), backing: "base.qcow2", backingFormat: "qcow2");
            return new Built(image, backing);
        }),
        new("extended-l2-overlay-on-raw-backing", 65536, 64 * Mib, async folder =>
        {
            var backing = Path.Combine(folder, "base.raw");
            RawImageFile.CreateSparse(backing, 64 * Mib);
            RawImageFile.Write(backing, 0, TestPattern.Bytes(60, (int)(12 * Mib)));
            var image = Path.Combine(folder, "overlay.qcow2");
            await QemuImage.CreateQcow2Async(image, (64 * Mib).ToString(), "extended_l2=on,cluster_size=65536",
                "base.raw", "raw");
            return new Built(image, backing);
        }),
    ];

    public static FreshQcow2Image ByName(string name) =>
        All.FirstOrDefault(i => i.Name == name) ?? throw new ArgumentException($"no fresh image named {name}");

    private static FreshQcow2Image Qemu(string name, long clusterSize, long size, string? options) =>
        new(name, clusterSize, size, async folder =>
        {
            var image = Path.Combine(folder, "disk.qcow2");
            await QemuImage.CreateQcow2Async(image, size.ToString(), options);
            return new Built(image, null);
        });
}
