using System.Text.Json;
using NbdQcow.Tests.Interop.Infrastructure;

namespace NbdQcow.Tests.Interop.Qcow2;

/// <summary>The foundation's real clients (nbdinfo, qemu-io, nbdcopy, fio, libnbd) on a qcow2 image qemu-img made.</summary>
public sealed class Qcow2ClientTests
{
    private const long Mib = 1 << 20;

    [Fact]
    public async Task NbdinfoShowsTheQcow2ExportWithEveryCapabilityAndQemusAllocationMap()
    {
        await using var image = await StartQcow2Async("disk.qcow2", "64M", "write -P 0x21 1M 3M", "write -P 0x22 40M 64k");
        var info = (await ToolRunner.RunAsync("nbdinfo", ["--json", image.Uri()])).EnsureSuccess(image.Server.Describe());
        using (var json = JsonDocument.Parse(info.Stdout))
        {
            var export = json.RootElement.GetProperty("exports")[0];
            Assert.Equal(64 * Mib, export.GetProperty("export-size").GetInt64());
            foreach (var capability in new[] { "can_flush", "can_fua", "can_trim", "can_zero", "can_cache", "can_multi_conn" })
            {
                Assert.True(export.GetProperty(capability).GetBoolean(), $"{capability} false:\n{info.Stdout}");
            }

            Assert.Contains("base:allocation", export.GetProperty("contexts").EnumerateArray().Select(c => c.GetString()));
        }

        var map = (await ToolRunner.RunAsync("nbdinfo", ["--map", "--json", image.Uri()])).EnsureSuccess(image.Server.Describe());
        using (var json = JsonDocument.Parse(map.Stdout))
        {
            var extents = json.RootElement.EnumerateArray().Select(e => new MapExtent(e.GetProperty("offset").GetInt64(),
                e.GetProperty("length").GetInt64(), (e.GetProperty("type").GetInt32() & 1) == 0,
                (e.GetProperty("type").GetInt32() & 2) != 0));
            var runs = QemuImgMap.DataRuns(extents);
            Assert.True(runs.SequenceEqual([(1 * Mib, 4 * Mib), (40 * Mib, 40 * Mib + 65536)]),
                $"data runs {QemuImgMap.Format(runs)}\n{map.Stdout}");
        }

        await image.Server.StopAndAssertCleanExitAsync();
    }

    [Fact]
    public async Task QemuIoPatternsUnalignedAndThirtyTwoMebibyteRequestsOnQcow2ReadBackAndQemuReadsTheSame()
    {
        await using var image = await StartQcow2Async("disk.qcow2", "80M");
        string[] writes = ["write -P 0x31 0 32M", "write -P 0x32 513 1000", "write -P 0x33 65535 2", "write -P 0x34 40M 32M",
            "write -z 50M 1M"];
        string[] reads = ["read -P 0x31 0 513", "read -P 0x32 513 1000", "read -P 0x31 1513 64022", "read -P 0x33 65535 2",
            "read -P 0x31 65537 33488895", "read -P 0 32M 8M", "read -P 0x34 40M 10M", "read -P 0 50M 1M",
            "read -P 0x34 51M 21M", "read -P 0 72M 8M"];
        await QemuIoAsync(image.Uri(), "raw", image.Server, [.. writes, .. reads]);
        await image.Server.StopAndAssertCleanExitAsync();
        await QemuImage.AssertCheckCleanAsync(image.ImagePath);
        await QemuIoAsync(image.ImagePath, "qcow2", null, reads);
    }

    [Fact]
    public async Task NbdcopyIntoAndOutOfAQcow2ImageRoundTripsEveryByte()
    {
        await using var image = await StartQcow2Async("disk.qcow2", "64M", "write -P 0x41 10M 10M");
        var source = image.Folder.File("source.raw");
        RawImageFile.CreateSparse(source, 64 * Mib);
        RawImageFile.Write(source, 3 * Mib + 4096, TestPattern.Bytes(20, (int)(9 * Mib)));
        RawImageFile.Write(source, 63 * Mib, TestPattern.Bytes(21, (int)Mib));
        (await ToolRunner.RunAsync("nbdcopy", ["--flush", source, image.Uri()])).EnsureSuccess(image.Server.Describe());
        var copy = image.Folder.File("copy.raw");
        (await ToolRunner.RunAsync("nbdcopy", [image.Uri(), copy])).EnsureSuccess(image.Server.Describe());
        (await ToolRunner.RunAsync("cmp", [source, copy])).EnsureSuccess();
        await image.Server.StopAndAssertCleanExitAsync();
        await QemuImage.AssertCheckCleanAsync(image.ImagePath);
        await QemuImage.AssertIdenticalAsync(image.ImagePath, "qcow2", source, "raw");
    }

    [Fact]
    public async Task FioRandomWritesVerifyWithCrc32cOnQcow2AndLeaveACleanImage()
    {
        await using var image = await StartQcow2Async("disk.qcow2", "64M");
        await FioWorkload.RunVerifiedRandomWritesAsync(image.Uri(), image.Server, "--bsrange=512-128k");
        await image.Server.StopAndAssertCleanExitAsync();
        await QemuImage.AssertCheckCleanAsync(image.ImagePath);
    }

    public static IEnumerable<object[]> LibnbdChecks =>
    [
        ["in-flight-64"], ["zero"], ["trim"], ["cache"], ["fua"], ["export-name-path"], ["beyond-end"], ["multi-conn"],
        ["structured-replies", "on"], ["structured-replies", "off"],
    ];

    [Theory]
    [MemberData(nameof(LibnbdChecks))]
    public async Task LibnbdProtocolCheckPassesOnQcow2AndLeavesACleanImage(string check, string? argument = null)
    {
        await using var image = await StartQcow2Async("disk.qcow2", "64M");
        (await ToolRunner.RunPythonScriptAsync("libnbd_checks.py",
            argument is null ? [check, image.Uri()] : [check, image.Uri(), argument])).EnsureSuccess(image.Server.Describe());
        await image.Server.StopAndAssertCleanExitAsync();
        await QemuImage.AssertCheckCleanAsync(image.ImagePath);
    }

    [Fact]
    public async Task ServeCreateWithAQcow2NameMakesAnImageQemuAccepts()
    {
        await using var image = await ServedImage.StartAsync(_ => Task.CompletedTask, "created.qcow2",
            new ServeOptions { CreateSize = "1G" });
        await QemuIoAsync(image.Uri(), "raw", image.Server, ["write -P 0x51 100M 1M", "read -P 0x51 100M 1M"]);
        await image.Server.StopAndAssertCleanExitAsync();
        var info = (await ToolRunner.RunAsync("qemu-img", ["info", "--output=json", image.ImagePath])).EnsureSuccess();
        using var json = JsonDocument.Parse(info.Stdout);
        Assert.Equal("qcow2", json.RootElement.GetProperty("format").GetString());
        Assert.Equal(1L << 30, json.RootElement.GetProperty("virtual-size").GetInt64());
        await QemuImage.AssertCheckCleanAsync(image.ImagePath);
        await QemuIoAsync(image.ImagePath, "qcow2", null, ["read -P 0x51 100M 1M", "read -P 0 0 100M"]);
    }

    private static Task<ServedImage> StartQcow2Async(string name, string size, params string[] qemuIoCommands) =>
        ServedImage.StartAsync(async path =>
        {
            await QemuImage.CreateQcow2Async(path, size);
            if (qemuIoCommands.Length > 0)
            {
                await QemuImage.IoAsync(path, "qcow2", qemuIoCommands);
            }
        }, name);

    private static async Task QemuIoAsync(string target, string format, ServerProcess? server, IEnumerable<string> commands)
    {
        var arguments = new List<string> { "-f", format };
        foreach (var command in commands)
        {
            arguments.AddRange(["-c", command]);
        }

        arguments.Add(target);
        var result = (await ToolRunner.RunAsync("qemu-io", arguments)).EnsureSuccess(server?.Describe());
        Assert.DoesNotContain("failed", result.Stdout + result.Stderr, StringComparison.OrdinalIgnoreCase);
    }
}
