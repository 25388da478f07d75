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

    [Fact]
    public async Task MixedBlockSizeRandomWritesVerifyWithCrc32c()
    {
        await using var image = await ServedImage.StartRawAsync(64L << 20);
        await FioWorkload.RunVerifiedRandomWritesAsync(image.Uri(), image.Server, "--bsrange=512-128k");
        await image.Server.StopAndAssertCleanExitAsync();
    }
}
