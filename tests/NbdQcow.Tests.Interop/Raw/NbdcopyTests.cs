using NbdQcow.Tests.Interop.Infrastructure;

namespace NbdQcow.Tests.Interop.Raw;

/// <summary>nbdcopy (libnbd-bin: several connections, many requests in flight) in both directions.</summary>
public sealed class NbdcopyTests
{
    private const int Mib = 1 << 20;
    private const long ImageSize = 64L * Mib;

    [Fact]
    public async Task CopyOutOfTheServerMatchesTheImageByteForByte()
    {
        await using var image = await ServedImage.StartRawAsync(ImageSize, prepare: path =>
        {
            RawImageFile.Write(path, 0, TestPattern.Bytes(10, 5 * Mib));
            RawImageFile.Write(path, 33L * Mib + 4096, TestPattern.Bytes(11, 7 * Mib + 512));
        });
        var target = image.Folder.File("copy.raw");
        (await ToolRunner.RunAsync("nbdcopy", [image.Uri(), target]))
            .EnsureSuccess(image.Server.Describe());
        await image.Server.StopAndAssertCleanExitAsync();
        Assert.Equal(ImageSize, new FileInfo(target).Length);
        (await ToolRunner.RunAsync("cmp", [image.ImagePath, target])).EnsureSuccess();
    }

    [Fact]
    public async Task CopyIntoTheServerReplacesTheWholeImage()
    {
        await using var image = await ServedImage.StartRawAsync(ImageSize,
            prepare: path => RawImageFile.Write(path, 50L * Mib, TestPattern.Bytes(12, Mib)));
        var source = image.Folder.File("source.raw");
        RawImageFile.CreateSparse(source, ImageSize);
        RawImageFile.Write(source, 3L * Mib + 100, TestPattern.Bytes(13, 9 * Mib));
        RawImageFile.Write(source, 60L * Mib, TestPattern.Bytes(14, 4 * Mib));
        (await ToolRunner.RunAsync("nbdcopy", ["--flush", source, image.Uri()]))
            .EnsureSuccess(image.Server.Describe());
        await image.Server.StopAndAssertCleanExitAsync();
        (await ToolRunner.RunAsync("cmp", [source, image.ImagePath])).EnsureSuccess();
    }
}
