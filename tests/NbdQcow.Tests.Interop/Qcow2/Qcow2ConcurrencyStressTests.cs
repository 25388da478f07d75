using NbdQcow.Tests.Interop.Infrastructure;

namespace NbdQcow.Tests.Interop.Qcow2;

/// <summary>
/// Many connections writing into the same unallocated clusters at once (disjoint pieces, then fully overlapping
/// clusters): no write lost, no foreign data, and after a clean stop qemu-img check finds no leak (nothing allocated
/// twice) and qemu reads the file exactly as the server served it.
/// </summary>
public sealed class Qcow2ConcurrencyStressTests
{
    public static IEnumerable<object[]> Images =>
        new[] { "cluster-64k", "cluster-512", "extended-l2-64k", "overlay-on-qcow2-backing" }.Select(n => new object[] { n });

    [Theory]
    [MemberData(nameof(Images))]
    public async Task EightConnectionsWritingOverlappingUnallocatedRangesLoseNothingAndLeakNothing(string imageName)
    {
        var fresh = FreshQcow2Image.ByName(imageName);
        using var folder = new TempDirectory("q2s");
        var built = await fresh.Build(folder.Path);
        var backingHash = built.BackingPath is null ? null : QemuImage.Sha256(built.BackingPath);
        var observed = folder.File("observed.raw");
        await using (var server = await ServerProcess.StartAsync(new ServeOptions { ImagePath = built.ImagePath }))
        {
            (await ToolRunner.RunPythonScriptAsync("overlapping_writers.py",
                [server.Uri(), "8", fresh.ClusterSize.ToString(), "31337", observed], TimeSpan.FromSeconds(240)))
                .EnsureSuccess(server.Describe());
            await server.StopAndAssertCleanExitAsync();
        }

        await QemuImage.AssertCheckCleanAsync(built.ImagePath);
        await QemuImage.AssertIdenticalAsync(built.ImagePath, "qcow2", observed, "raw");
        if (built.BackingPath is not null)
        {
            Assert.True(backingHash == QemuImage.Sha256(built.BackingPath), "the backing file was modified");
        }
    }
}
