using NbdQcow.Tests.Interop.Infrastructure;

namespace NbdQcow.Tests.Interop.Raw;

/// <summary>The kernel client's userspace tool (nbd-client) listing exports with NBD_OPT_LIST.</summary>
public sealed class NbdClientListTests
{
    [Fact]
    public async Task NbdClientListPrintsTheExportName()
    {
        await using var image = await ServedImage.StartRawAsync(16L << 20);
        var result = (await ToolRunner.RunAsync("nbd-client",
            ["-l", "127.0.0.1", image.Server.Port!.Value.ToString()], TimeSpan.FromSeconds(30)))
            .EnsureSuccess(image.Server.Describe());
        var lines = result.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        Assert.Contains("disk", lines);
        image.Server.AssertStillRunning();
        await image.Server.StopAndAssertCleanExitAsync();
    }
}
