using NbdQcow.Tests.Interop.Infrastructure;

namespace NbdQcow.Tests.Interop.Qcow2;

/// <summary>
/// Every qcow2 variant qemu-img makes (see <see cref="Qcow2VariantCatalog"/>), served by nbdqcow, reads exactly as
/// qemu reads the file, and `qemu-img map` over NBD reports the same allocation as qemu's map of the file.
/// </summary>
public sealed class Qcow2VariantReadTests
{
    public static IEnumerable<object[]> Variants => Qcow2VariantCatalog.Names;

    [Theory]
    [MemberData(nameof(Variants))]
    public async Task ServedVariantReadsAsQemuReadsTheFileAndMapsTheSameAllocation(string variantName)
    {
        var variant = Qcow2VariantCatalog.ByName(variantName);
        using var folder = new TempDirectory("q2r");
        await variant.Build(folder.Path);
        var image = folder.File(variant.ImageFileName);
        var reference = folder.File("qemu-read.raw");
        await QemuImage.ConvertToRawAsync(image, "qcow2", reference, variant.Snapshot);
        var fileMap = await FileMapAsync(folder, image, variant.Snapshot);

        var options = new ServeOptions
        {
            ImagePath = image,
            ReadOnly = variant.Snapshot is not null,
            ExtraArguments = variant.Snapshot is null ? [] : ["--snapshot", variant.Snapshot],
        };
        await using (var server = await ServerProcess.StartAsync(options))
        {
            await QemuImage.AssertIdenticalAsync(reference, "raw", server.Uri(), "raw", server.Describe());
            var nbdMap = await QemuImgMap.ReadAsync(server.Uri(), "raw");
            var expected = QemuImgMap.DataRuns(fileMap);
            var actual = QemuImgMap.DataRuns(nbdMap);
            Assert.True(expected.SequenceEqual(actual),
                $"allocation differs.\nqemu's map of the file: {QemuImgMap.Format(expected)}\n" +
                $"qemu-img map over NBD:  {QemuImgMap.Format(actual)}\n{server.Describe()}");
            Assert.Equal(new FileInfo(reference).Length, nbdMap.Sum(e => e.Length));
            await server.StopAndAssertCleanExitAsync();
        }

        // Serving (and stopping) leaves the image as consistent as qemu made it.
        await QemuImage.AssertCheckCleanAsync(image);
    }

    /// <summary>qemu's map of the file; for a snapshot, of a copy with that snapshot applied.</summary>
    private static async Task<IReadOnlyList<MapExtent>> FileMapAsync(TempDirectory folder, string image, string? snapshot)
    {
        if (snapshot is null)
        {
            return await QemuImgMap.ReadAsync(image, "qcow2");
        }

        var copy = folder.File("snapshot-applied.qcow2");
        (await ToolRunner.RunAsync("cp", ["--sparse=always", image, copy])).EnsureSuccess();
        (await ToolRunner.RunAsync("qemu-img", ["snapshot", "-a", snapshot, copy])).EnsureSuccess();
        return await QemuImgMap.ReadAsync(copy, "qcow2");
    }
}
