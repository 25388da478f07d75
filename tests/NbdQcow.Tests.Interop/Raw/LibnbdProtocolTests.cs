using NbdQcow.Tests.Interop.Infrastructure;

namespace NbdQcow.Tests.Interop.Raw;

/// <summary>Protocol behaviour seen by libnbd (python3-libnbd through /usr/bin/python3) on a raw image.</summary>
public sealed class LibnbdProtocolTests
{
    private const long ImageSize = 64L << 20;

    [Fact]
    public Task SixtyFourRequestsInFlightOnOneConnectionAllCompleteWithTheRightData() => RunCheck("in-flight-64");

    [Fact]
    public Task WriteZeroesPlainNoHoleAndFastZeroLeaveZeroesAndKeepNeighbours() => RunCheck("zero");

    [Fact]
    public Task TrimPunchesTheRangeSoItReadsAsZeroes() => RunCheck("trim");

    [Fact]
    public Task CacheIsAdvertisedAndAccepted() => RunCheck("cache");

    [Fact]
    public Task FuaWritesAreAdvertisedAndVisibleOnAnotherConnection() => RunCheck("fua");

    [Fact]
    public Task OldExportNamePathWithAndWithoutNoZeroesServesData() => RunCheck("export-name-path");

    [Fact]
    public Task RequestsBeyondTheEndFailWithEinvalOrEnospcAndTheConnectionLivesOn() => RunCheck("beyond-end");

    [Fact]
    public Task MultiConnFlushOnOneConnectionCoversWritesOfAnother() => RunCheck("multi-conn");

    [Fact]
    public Task StructuredRepliesOnReadDataHolesAndBlockStatus() => RunCheck("structured-replies", "on");

    [Fact]
    public Task StructuredRepliesOffStillReadDataAndHoles() => RunCheck("structured-replies", "off");

    [Fact]
    public async Task ReadOnlyExportRefusesWritesZeroesAndTrimsWithEperm()
    {
        await using var image = await ServedImage.StartRawAsync(ImageSize, new ServeOptions { ReadOnly = true },
            path => RawImageFile.Write(path, 0, TestPattern.Bytes(1, 4096)));
        (await ToolRunner.RunPythonScriptAsync("libnbd_checks.py", ["read-only", image.Uri()]))
            .EnsureSuccess(image.Server.Describe());
        TestPattern.AssertEqual(TestPattern.Bytes(1, 4096), RawImageFile.Read(image.ImagePath, 0, 4096), 0,
            "image after refused writes");
        await image.Server.StopAndAssertCleanExitAsync();
    }

    private static async Task RunCheck(string check, params string[] arguments)
    {
        await using var image = await ServedImage.StartRawAsync(ImageSize);
        (await ToolRunner.RunPythonScriptAsync("libnbd_checks.py", [check, image.Uri(), .. arguments]))
            .EnsureSuccess(image.Server.Describe());
        await image.Server.StopAndAssertCleanExitAsync();
    }
}
