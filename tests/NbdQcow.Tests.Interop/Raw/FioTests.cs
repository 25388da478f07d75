using NbdQcow.Tests.Interop.Infrastructure;

namespace NbdQcow.Tests.Interop.Raw;

/// <summary>fio's nbd engine (libnbd) writing and verifying with CRC32C.</summary>
public sealed class FioTests
{
    [Fact]
    public async Task RandomWritesFromTwoConnectionsVerifyWithCrc32c()
    {
        await using var image = await ServedImage.StartRawAsync(64L << 20);
        await FioWorkload.RunVerifiedRandomWritesAsync(image.Uri(), image.Server);
        await image.Server.StopAndAssertCleanExitAsync();
    }

    [Theory]
    [InlineData("writethrough", "disk.img")]
    [InlineData("directsync", "disk.img")]
    [InlineData("writethrough", "disk.qcow2")]
    [InlineData("directsync", "disk.qcow2")]
    public async Task FlushesAndFuaFromFioWorkInModesWhereEveryWriteIsAlreadyDurable(string cache, string fileName)
    {
        // libnbd refuses to send a FLUSH the server did not advertise, so fio's fsync= failed against these modes.
        await using var image = await ServedImage.StartAsync(async path =>
        {
            if (fileName.EndsWith(".qcow2")) await QemuImage.CreateQcow2Async(path, "64M");
            else RawImageFile.CreateSparse(path, 64L << 20);
        }, fileName, new ServeOptions { CacheMode = cache });
        var result = await ToolRunner.RunAsync("fio", [
            "--name=flushes", "--ioengine=nbd", $"--uri={image.Uri()}", "--rw=randrw", "--rwmixread=50", "--bs=4k",
            "--size=8M", "--iodepth=4", "--fsync=4", "--number_ios=400", "--randrepeat=1", "--randseed=7",
        ], TimeSpan.FromSeconds(120));
        result.EnsureSuccess(image.Server.Describe());
        Assert.Contains("err= 0", result.Stdout);
        var info = (await ToolRunner.RunAsync("nbdinfo", ["--can", "flush", image.Uri()])).EnsureSuccess(image.Server.Describe());
        var fua = await ToolRunner.RunAsync("nbdinfo", ["--can", "fua", image.Uri()]);
        Assert.True(fua.ExitCode == 0, "FUA advertised: " + info.Stdout + fua.Stdout + fua.Stderr);
        await image.Server.StopAndAssertCleanExitAsync();
    }

    [Fact]
    public async Task MixedBlockSizeRandomWritesVerifyWithCrc32c()
    {
        await using var image = await ServedImage.StartRawAsync(64L << 20);
        await FioWorkload.RunVerifiedRandomWritesAsync(image.Uri(), image.Server, "--bsrange=512-128k");
        await image.Server.StopAndAssertCleanExitAsync();
    }
}
