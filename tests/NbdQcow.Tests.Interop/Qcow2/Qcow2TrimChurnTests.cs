using System.Text.Json;
using NbdQcow.Tests.Interop.Infrastructure;

namespace NbdQcow.Tests.Interop.Qcow2;

/// <summary>
/// Write-then-trim churn that never flushes must not grow the image without bound: freed clusters become reusable
/// once their unmap is durable (the max-dirty-age flusher, or a flush forced by the amount waiting), and a clean
/// stop leaves no leaked or trailing free space.
/// </summary>
public sealed class Qcow2TrimChurnTests
{
    private const long Mib = 1 << 20;
    private const int Rounds = 150;

    [Theory]
    [InlineData("1000")]
    [InlineData("off")]
    public async Task WriteTrimChurnWithoutFlushKeepsTheFileBoundedAndLeavesNoLeaksAfterStop(string maxDirtyAge)
    {
        await using var image = await ServedImage.StartAsync(path => QemuImage.CreateQcow2Async(path, "64M"), "churn.qcow2",
            new ServeOptions { ExtraArguments = ["--max-dirty-age", maxDirtyAge] });
        var result = (await ToolRunner.RunPythonScriptAsync("trim_churn.py", [image.Uri(), image.ImagePath, Rounds.ToString()]))
            .EnsureSuccess(image.Server.Describe());
        long largest = JsonDocument.Parse(result.Stdout).RootElement.GetProperty("largest").GetInt64();
        // 150 MiB churned. The bound: metadata, plus the 32 MiB of frees that make a flush run (the request waits past
        // four times that), plus what the churn allocates until it has run. Measured: 51 MiB (1000 ms), 32 MiB (off).
        Assert.True(largest < 100 * Mib, $"the image file reached {largest / Mib} MiB for a disk that holds nothing\n{image.Server.Describe()}");
        await image.Server.StopAndAssertCleanExitAsync();
        await QemuImage.AssertCheckCleanAsync(image.ImagePath);
        long after = new FileInfo(image.ImagePath).Length;
        Assert.True(after < 4 * Mib, $"after a clean stop the image file is still {after} bytes");
    }
}
