using NbdQcow.Tests.Interop.Infrastructure;

namespace NbdQcow.Tests.Interop.Raw;

/// <summary>qemu-img convert, compare and map through the server, against the image file itself.</summary>
public sealed class QemuImgTests
{
    private const int Mib = 1 << 20;
    private const long ImageSize = 48L * Mib;

    [Fact]
    public async Task ConvertOutOfTheServerToQcow2AndRawGivesIdenticalImages()
    {
        await using var image = await ServedImage.StartRawAsync(ImageSize, prepare: WriteLayout);
        var qcow2 = image.Folder.File("out.qcow2");
        var raw = image.Folder.File("out.raw");
        (await ToolRunner.RunAsync("qemu-img", ["convert", "-f", "raw", "-O", "qcow2", image.Uri(), qcow2]))
            .EnsureSuccess(image.Server.Describe());
        (await ToolRunner.RunAsync("qemu-img", ["convert", "-f", "raw", "-O", "raw", image.Uri(), raw]))
            .EnsureSuccess(image.Server.Describe());
        await image.Server.StopAndAssertCleanExitAsync();
        await AssertIdentical(image.ImagePath, "raw", qcow2, "qcow2");
        await AssertIdentical(image.ImagePath, "raw", raw, "raw");
    }

    [Fact]
    public async Task ConvertIntoTheServerWritesEveryByteOfTheSource()
    {
        await using var image = await ServedImage.StartRawAsync(ImageSize,
            prepare: path => RawImageFile.Write(path, 30L * Mib, TestPattern.Bytes(99, Mib)));
        var source = image.Folder.File("source.qcow2");
        (await ToolRunner.RunAsync("qemu-img", ["create", "-f", "qcow2", source, ImageSize.ToString()])).EnsureSuccess();
        (await ToolRunner.RunAsync("qemu-io", ["-f", "qcow2", "-c", "write -P 0x71 0 3M", "-c", "write -P 0x72 10M 5M",
            "-c", "write -P 0x73 47M 1M", source])).EnsureSuccess();
        // -n: the target exists; the source's unallocated 30 MiB range must overwrite the old data with zeroes.
        (await ToolRunner.RunAsync("qemu-img", ["convert", "-n", "-f", "qcow2", "-O", "raw", source, image.Uri()]))
            .EnsureSuccess(image.Server.Describe());
        await image.Server.StopAndAssertCleanExitAsync();
        await AssertIdentical(source, "qcow2", image.ImagePath, "raw");
    }

    [Fact]
    public async Task CompareOverNbdFindsIdenticalThenTheFirstDifferentByte()
    {
        await using var image = await ServedImage.StartRawAsync(ImageSize, prepare: WriteLayout);
        var copy = image.Folder.File("copy.raw");
        File.Copy(image.ImagePath, copy);
        (await ToolRunner.RunAsync("qemu-img", ["compare", "-f", "raw", "-F", "raw", copy, image.Uri()]))
            .EnsureSuccess(image.Server.Describe());
        RawImageFile.Write(copy, 17L * Mib + 5, [0xee]);
        var differs = await ToolRunner.RunAsync("qemu-img", ["compare", "-f", "raw", "-F", "raw", copy, image.Uri()]);
        Assert.True(differs.ExitCode == 1, differs.Describe("expected exit 1 (images differ)"));
        // qemu-img names the start of the compared chunk that differs: 17 MiB, at or before the changed byte.
        var reported = System.Text.RegularExpressions.Regex.Match(differs.Stdout, @"mismatch at offset (\d+)");
        Assert.True(reported.Success, differs.Describe("expected a content mismatch report"));
        Assert.InRange(long.Parse(reported.Groups[1].Value), 17L * Mib, 17L * Mib + 5);
        await image.Server.StopAndAssertCleanExitAsync();
    }

    [Fact]
    public async Task MapOverNbdReportsDataAndHolesAsTheFileHasThem()
    {
        await using var image = await ServedImage.StartRawAsync(ImageSize, prepare: WriteLayout);
        var overNbd = await QemuImgMap.ReadAsync(image.Uri(), "raw");
        // The server holds the image's write lock; qemu-img reads the file itself only once the server is gone.
        await image.Server.StopAndAssertCleanExitAsync();
        var ofFile = await QemuImgMap.ReadAsync(image.ImagePath, "raw");
        Assert.Equal(ImageSize, overNbd.Sum(e => e.Length));
        var expected = new[] { (0L, 1L * Mib), (4L * Mib, 7L * Mib), (17L * Mib, 18L * Mib), (47L * Mib, 48L * Mib) };
        Assert.True(QemuImgMap.DataRuns(ofFile).SequenceEqual(expected),
            $"the file's own map differs from the layout written: {QemuImgMap.Format(QemuImgMap.DataRuns(ofFile))}");
        Assert.True(QemuImgMap.DataRuns(overNbd).SequenceEqual(expected),
            $"map over NBD: {QemuImgMap.Format(QemuImgMap.DataRuns(overNbd))}, expected {QemuImgMap.Format(expected)}");
        Assert.All(overNbd.Where(e => !e.Data), hole => Assert.True(hole.Zero, $"hole {hole} not reported as zero"));
    }

    /// <summary>Data at 0-1 MiB, 4-7 MiB, 17-18 MiB and the last MiB; holes elsewhere.</summary>
    private static void WriteLayout(string path)
    {
        RawImageFile.Write(path, 0, TestPattern.Bytes(1, Mib));
        RawImageFile.Write(path, 4L * Mib, TestPattern.Bytes(2, 3 * Mib));
        RawImageFile.Write(path, 17L * Mib, TestPattern.Bytes(3, Mib));
        RawImageFile.Write(path, ImageSize - Mib, TestPattern.Bytes(4, Mib));
    }

    private static async Task AssertIdentical(string first, string firstFormat, string second, string secondFormat) =>
        (await ToolRunner.RunAsync("qemu-img", ["compare", "-f", firstFormat, "-F", secondFormat, first, second]))
            .EnsureSuccess();
}
