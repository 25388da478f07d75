using NbdQcow.Tests.Interop.Infrastructure;

namespace NbdQcow.Tests.Interop.Qcow2;

/// <summary>
/// `serve --aio io_uring` with real clients: qemu-img convert writes a pattern through it, qemu-img compare and
/// nbdcopy read it back, and after a clean stop the qcow2 image checks clean and holds the same bytes; and the
/// fallback to threads when the kernel refuses io_uring.
/// </summary>
public sealed class IoUringServeTests
{
    private const int Mib = 1 << 20;
    private const long ImageSize = 64L * Mib;

    private static string Source(TempDirectory folder)
    {
        var source = folder.File("source.raw");
        RawImageFile.CreateSparse(source, ImageSize);
        RawImageFile.Write(source, 0, TestPattern.Bytes(21, 3 * Mib));
        // Odd offsets and lengths: sub-block writes reach the O_DIRECT read-modify-write path in cache none.
        RawImageFile.Write(source, 17L * Mib + 1234, TestPattern.Bytes(22, 5 * Mib + 777));
        RawImageFile.Write(source, ImageSize - 3 * Mib, TestPattern.Bytes(23, 3 * Mib));
        return source;
    }

    [Theory]
    [InlineData("none")]
    [InlineData("writeback")]
    public async Task Qcow2_served_with_io_uring_takes_a_converted_image_and_gives_it_back_byte_for_byte(string cache)
    {
        await using var image = await ServedImage.StartAsync(path => QemuImage.CreateQcow2Async(path, "64M"), "disk.qcow2",
            new ServeOptions { CacheMode = cache, ExtraArguments = ["--aio", "io_uring"] });
        var source = Source(image.Folder);
        (await ToolRunner.RunAsync("qemu-img", ["convert", "-n", "-f", "raw", "-O", "raw", source, image.Uri()]))
            .EnsureSuccess(image.Server.Describe());
        (await ToolRunner.RunAsync("qemu-img", ["compare", "-f", "raw", "-F", "raw", source, image.Uri()]))
            .EnsureSuccess(image.Server.Describe());
        var copy = image.Folder.File("copy.raw");
        (await ToolRunner.RunAsync("nbdcopy", [image.Uri(), copy])).EnsureSuccess(image.Server.Describe());
        (await ToolRunner.RunAsync("cmp", [source, copy])).EnsureSuccess();
        Assert.DoesNotContain("io_uring unavailable", image.Server.Output);
        await image.Server.StopAndAssertCleanExitAsync();
        await QemuImage.AssertCheckCleanAsync(image.ImagePath);
        (await ToolRunner.RunAsync("qemu-img", ["compare", "-f", "raw", "-F", "qcow2", source, image.ImagePath])).EnsureSuccess();
    }

    [Fact]
    public async Task A_kernel_refusing_io_uring_gets_one_warning_and_the_threads_engine_serves()
    {
        await using var image = await ServedImage.StartRawAsync(ImageSize, new ServeOptions
        {
            CacheMode = "none",
            ExtraArguments = ["--aio", "io_uring"],
            Environment = new Dictionary<string, string> { ["NBDQCOW_IO_URING_SIMULATE_ENOSYS"] = "1" },
        });
        var source = Source(image.Folder);
        (await ToolRunner.RunAsync("nbdcopy", ["--flush", source, image.Uri()])).EnsureSuccess(image.Server.Describe());
        await image.Server.StopAndAssertCleanExitAsync();
        (await ToolRunner.RunAsync("cmp", [source, image.ImagePath])).EnsureSuccess();
        var warnings = image.Server.Output.Split('\n').Count(line => line.Contains("io_uring unavailable", StringComparison.Ordinal));
        Assert.Equal(1, warnings);
        Assert.Contains("using --aio threads", image.Server.Output);
    }

    [Fact]
    public async Task A_failing_io_uring_enter_fails_its_batch_with_eio_once_and_the_threads_engine_serves_on()
    {
        await using var image = await ServedImage.StartAsync(path => QemuImage.CreateQcow2Async(path, "64M"), "disk.qcow2",
            new ServeOptions
            {
                CacheMode = "none",
                ExtraArguments = ["--aio", "io_uring"],
                // The third submitting io_uring_enter fails with ENOMEM.
                Environment = new Dictionary<string, string> { ["NBDQCOW_IO_URING_SIMULATE_ENTER_FAILURE"] = "3" },
            });
        var run = (await ToolRunner.RunPythonScriptAsync("burst_until_enter_fails.py", [image.Uri(), "6"], TimeSpan.FromSeconds(60)))
            .EnsureSuccess(image.Server.Describe());
        using var result = System.Text.Json.JsonDocument.Parse(run.Stdout);
        var root = result.RootElement;
        Assert.False(root.GetProperty("hung").GetBoolean(), run.Stdout + image.Server.Describe());
        Assert.True(root.GetProperty("failed").GetInt32() >= 1, run.Stdout);
        Assert.Equal([root.GetProperty("eio").GetInt32()], root.GetProperty("errnos").EnumerateArray().Select(e => e.GetInt32()));
        // Served on afterwards: the last burst, a FLUSH (the sync that never ran latched nothing), every write read back.
        Assert.True(root.GetProperty("succeeded").GetInt32() >= 16, run.Stdout);
        Assert.True(root.GetProperty("flushed").GetBoolean(), run.Stdout + image.Server.Describe());
        Assert.True(root.GetProperty("verified").GetBoolean(), run.Stdout);
        var lines = image.Server.Output.Split('\n').Count(line => line.Contains("io_uring_enter failed", StringComparison.Ordinal));
        Assert.Equal(1, lines);
        Assert.Contains("uses --aio threads", image.Server.Output);
        await image.Server.StopAndAssertCleanExitAsync();
        await QemuImage.AssertCheckCleanAsync(image.ImagePath);
    }

    [Fact]
    public async Task An_unknown_aio_engine_is_a_usage_error_naming_the_allowed_ones()
    {
        var result = await ToolRunner.RunAsync(RepositoryRoot.Launcher, ["serve", "/nonexistent.img", "--aio", "native"]);
        Assert.Equal(2, result.ExitCode);
        Assert.Contains("Aio: 'native' is not an I/O engine; allowed: threads, io_uring", result.Stderr + result.Stdout);
    }
}
