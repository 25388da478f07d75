using NbdQcow.Tests.Interop.Infrastructure;

namespace NbdQcow.Tests.Interop.Raw;

/// <summary>qemu-io (qemu-utils) over nbd:// against a raw image: patterns written, read back and checked.</summary>
public sealed class QemuIoTests
{
    [Fact]
    public async Task WrittenPatternsReadBackOverNbdAndLandInTheFile()
    {
        await using var image = await ServedImage.StartRawAsync(64L << 20);
        await QemuIo(image, "write -P 0x11 0 64k", "write -P 0x22 1M 1M", "write -P 0x33 63M 1M",
            "read -P 0x11 0 64k", "read -P 0x22 1M 1M", "read -P 0x33 63M 1M", "read -P 0 64k 960k", "flush");
        await image.Server.StopAndAssertCleanExitAsync();
        AssertFileFilled(image.ImagePath, 1 << 20, 1 << 20, 0x22);
        AssertFileFilled(image.ImagePath, 63L << 20, 1 << 20, 0x33);
    }

    [Fact]
    public async Task UnalignedWritesAndReadsKeepTheirNeighboursIntact()
    {
        await using var image = await ServedImage.StartRawAsync(16L << 20);
        await QemuIo(image, "write -P 0xaa 0 8k", "write -P 0xbb 513 1000", "write -P 0xcc 4095 2",
            "read -P 0xaa 0 513", "read -P 0xbb 513 1000", "read -P 0xaa 1513 2582", "read -P 0xcc 4095 2",
            "read -P 0xaa 4097 4095", "write -P 0xdd 1048575 3", "read -P 0xdd 1048575 3", "read -P 0 1048574 1",
            "read -P 0 1048578 1");
        await image.Server.StopAndAssertCleanExitAsync();
        var expected = new byte[8192];
        expected.AsSpan().Fill(0xaa);
        expected.AsSpan(513, 1000).Fill(0xbb);
        expected.AsSpan(4095, 2).Fill(0xcc);
        TestPattern.AssertEqual(expected, RawImageFile.Read(image.ImagePath, 0, 8192), 0, "file after unaligned writes");
    }

    [Fact]
    public async Task ThirtyTwoMebibyteRequestsAreServedWhole()
    {
        await using var image = await ServedImage.StartRawAsync(80L << 20);
        await QemuIo(image, "write -P 0x5c 0 32M", "write -P 0x6d 40M 32M", "read -P 0x5c 0 32M",
            "read -P 0x6d 40M 32M", "read -P 0 32M 8M");
        await image.Server.StopAndAssertCleanExitAsync();
        AssertFileFilled(image.ImagePath, 40L << 20, 32 << 20, 0x6d);
    }

    [Fact]
    public async Task AsyncWritesInParallelThenZeroAndDiscardReadBackCorrectly()
    {
        await using var image = await ServedImage.StartRawAsync(32L << 20);
        await QemuIo(image, "aio_write -P 0x01 0 1M", "aio_write -P 0x02 1M 1M", "aio_write -P 0x03 2M 1M",
            "aio_write -P 0x04 3M 1M", "aio_flush", "write -z 1M 1M", "discard 2M 1M", "read -P 0x01 0 1M",
            "read -P 0 1M 2M", "read -P 0x04 3M 1M");
        await image.Server.StopAndAssertCleanExitAsync();
    }

    private static async Task QemuIo(ServedImage image, params string[] commands)
    {
        var arguments = new List<string> { "-f", "raw" };
        foreach (var command in commands)
        {
            arguments.AddRange(["-c", command]);
        }

        arguments.Add(image.Uri());
        var result = (await ToolRunner.RunAsync("qemu-io", arguments)).EnsureSuccess(image.Server.Describe());
        Assert.DoesNotContain("failed", result.Stdout + result.Stderr, StringComparison.OrdinalIgnoreCase);
    }

    private static void AssertFileFilled(string path, long offset, int length, byte value)
    {
        var expected = new byte[length];
        expected.AsSpan().Fill(value);
        TestPattern.AssertEqual(expected, RawImageFile.Read(path, offset, length), offset, "image file");
    }
}
