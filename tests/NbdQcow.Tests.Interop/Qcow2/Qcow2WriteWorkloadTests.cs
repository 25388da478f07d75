using NbdQcow.Tests.Interop.Infrastructure;

namespace NbdQcow.Tests.Interop.Qcow2;

/// <summary>
/// Seeded write workloads (writes, zeroes, trims) through libnbd and through qemu-io on fresh qcow2 images, mirrored
/// into a raw reference file. After a clean stop: `qemu-img check` finds no errors and no leaks, `qemu-img compare`
/// of the image (read by qemu itself) with the reference is identical, and any backing file is unchanged.
/// </summary>
public sealed class Qcow2WriteWorkloadTests
{
    public static IEnumerable<object[]> Images => FreshQcow2Image.All.Select(i => new object[] { i.Name });

    [Theory]
    [MemberData(nameof(Images))]
    public async Task LibnbdWorkloadWithRequestsInFlightLeavesACleanImageIdenticalToTheReference(string imageName)
    {
        var fresh = FreshQcow2Image.ByName(imageName);
        await RunMirroredAsync(fresh, async (server, reference) =>
            (await ToolRunner.RunPythonScriptAsync("mirrored_workload.py",
                [server.Uri(), reference, "20261201", "200", fresh.ClusterSize.ToString(), "16"],
                TimeSpan.FromSeconds(300))).EnsureSuccess(server.Describe()));
    }

    [Theory]
    [MemberData(nameof(Images))]
    public async Task QemuIoWorkloadLeavesACleanImageIdenticalToTheReference(string imageName)
    {
        var fresh = FreshQcow2Image.ByName(imageName);
        var commands = QemuIoCommands(seed: 7, count: 120, fresh.ClusterSize, fresh.Size);
        await RunMirroredAsync(fresh, async (server, reference) =>
        {
            await QemuIoOnAsync(server.Uri(), commands, server);
            await QemuIoOnAsync(reference, commands, null);
        });
    }

    /// <summary>Builds the image, a reference holding qemu's read of it, serves it, runs the workload, checks.</summary>
    private static async Task RunMirroredAsync(FreshQcow2Image fresh, Func<ServerProcess, string, Task> workload)
    {
        using var folder = new TempDirectory("q2w");
        var built = await fresh.Build(folder.Path);
        var reference = folder.File("reference.raw");
        await QemuImage.ConvertToRawAsync(built.ImagePath, "qcow2", reference);
        var backingHash = built.BackingPath is null ? null : QemuImage.Sha256(built.BackingPath);

        await using (var server = await ServerProcess.StartAsync(new ServeOptions { ImagePath = built.ImagePath }))
        {
            await workload(server, reference);
            await server.StopAndAssertCleanExitAsync();
        }

        await QemuImage.AssertCheckCleanAsync(built.ImagePath);
        await QemuImage.AssertIdenticalAsync(built.ImagePath, "qcow2", reference, "raw");
        if (built.BackingPath is not null)
        {
            Assert.True(backingHash == QemuImage.Sha256(built.BackingPath), "the backing file was modified");
        }
    }

    /// <summary>
    /// Seeded qemu-io commands: unaligned pattern writes (mostly in a hot region, so clusters are allocated and then
    /// partly rewritten), zero writes, cluster-aligned discards and flushes.
    /// </summary>
    public static IReadOnlyList<string> QemuIoCommands(int seed, int count, long clusterSize, long size)
    {
        var random = new Random(seed);
        var hot = Math.Min(size, 8L << 20);
        var commands = new List<string>();
        (long Offset, long Length) Range(long maxLength)
        {
            var length = random.Next(3) switch
            {
                0 => random.NextInt64(1, 4097),
                1 => random.NextInt64(1, 65537),
                _ => random.NextInt64(1, maxLength + 1),
            };
            var region = random.NextDouble() < 0.6 ? hot : size;
            return (random.NextInt64(0, region - length + 1), length);
        }

        for (var i = 0; i < count; i++)
        {
            var kind = random.NextDouble();
            if (kind < 0.6)
            {
                var (offset, length) = Range(1L << 20);
                commands.Add($"write -P 0x{random.Next(1, 256):x2} {offset} {length}");
            }
            else if (kind < 0.78)
            {
                var (offset, length) = Range(4L << 20);
                commands.Add($"write -z {offset} {length}");
            }
            else if (kind < 0.93)
            {
                var clusters = size / clusterSize;
                var first = random.NextInt64(0, random.NextDouble() < 0.7 ? Math.Max(1, hot / clusterSize) : clusters);
                var n = Math.Min(random.NextInt64(1, 9), clusters - first);
                commands.Add($"discard {first * clusterSize} {n * clusterSize}");
            }
            else
            {
                commands.Add("flush");
            }
        }

        return commands;
    }

    private static async Task QemuIoOnAsync(string target, IReadOnlyList<string> commands, ServerProcess? server)
    {
        var arguments = new List<string> { "-f", "raw" };
        foreach (var command in commands)
        {
            arguments.AddRange(["-c", command]);
        }

        arguments.Add(target);
        var result = (await ToolRunner.RunAsync("qemu-io", arguments, TimeSpan.FromSeconds(300)))
            .EnsureSuccess(server?.Describe());
        Assert.DoesNotContain("failed", result.Stdout + result.Stderr, StringComparison.OrdinalIgnoreCase);
    }
}
