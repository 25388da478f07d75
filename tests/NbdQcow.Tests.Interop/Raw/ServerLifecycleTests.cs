using System.Text.Json;
using NbdQcow.Tests.Interop.Infrastructure;

namespace NbdQcow.Tests.Interop.Raw;

/// <summary>Starting with --create, serving over a Unix socket, and stopping with SIGTERM.</summary>
public sealed class ServerLifecycleTests
{
    private const int Mib = 1 << 20;

    [Fact]
    public async Task ServeCreateMakesASparseImageOfTheRequestedSizeWithAllCapabilities()
    {
        await using var image = await ServedImage.StartAsync(_ => Task.CompletedTask, "created.img",
            new ServeOptions { CreateSize = "1G" });
        Assert.Equal(1L << 30, new FileInfo(image.ImagePath).Length);
        var allocated = await RawImageFile.AllocatedBytesAsync(image.ImagePath);
        Assert.True(allocated < Mib, $"--create allocated {allocated} bytes; expected a sparse file");
        var info = (await ToolRunner.RunAsync("nbdinfo", ["--json", image.Uri()])).EnsureSuccess(image.Server.Describe());
        using var json = JsonDocument.Parse(info.Stdout);
        var export = json.RootElement.GetProperty("exports")[0];
        Assert.Equal(1L << 30, export.GetProperty("export-size").GetInt64());
        foreach (var capability in new[] { "can_flush", "can_fua", "can_trim", "can_zero", "can_fast_zero", "can_cache",
                     "can_multi_conn" })
        {
            Assert.True(export.GetProperty(capability).GetBoolean(), $"{capability} false:\n{info.Stdout}");
        }

        Assert.Contains("base:allocation", export.GetProperty("contexts").EnumerateArray().Select(c => c.GetString()));
        await image.Server.StopAndAssertCleanExitAsync();
    }

    [Fact]
    public async Task ServeWithoutAnImageCreatesAndServesDiskQcow2InTheWorkingFolder()
    {
        using var folder = new TempDirectory("default-image");
        await using (var server = await ServerProcess.StartAsync(new ServeOptions { WorkingDirectory = folder.Path }))
        {
            var info = (await ToolRunner.RunAsync("nbdinfo", ["--json", server.Uri("disk")])).EnsureSuccess(server.Describe());
            using var json = JsonDocument.Parse(info.Stdout);
            Assert.Equal(10L << 30, json.RootElement.GetProperty("exports")[0].GetProperty("export-size").GetInt64());
            await server.StopAndAssertCleanExitAsync();
        }

        var check = await ToolRunner.RunAsync("qemu-img", ["check", folder.File("disk.qcow2")]);
        check.EnsureSuccess("qemu-img check of the default image");
    }

    [Fact]
    public async Task UnixSocketExportServesNbdinfoQemuIoAndLibnbd()
    {
        await using var image = await ServedImage.StartRawAsync(64L * Mib, new ServeOptions { UnixSocket = true });
        var uri = image.Uri();
        Assert.StartsWith("nbd+unix:///", uri);
        var info = (await ToolRunner.RunAsync("nbdinfo", ["--json", uri])).EnsureSuccess(image.Server.Describe());
        using (var json = JsonDocument.Parse(info.Stdout))
        {
            Assert.Equal(64L * Mib, json.RootElement.GetProperty("exports")[0].GetProperty("export-size").GetInt64());
        }

        (await ToolRunner.RunAsync("qemu-io", ["-f", "raw", "-c", "write -P 0x42 40M 2M", "-c", "read -P 0x42 40M 2M",
            uri])).EnsureSuccess(image.Server.Describe());
        (await ToolRunner.RunPythonScriptAsync("libnbd_checks.py", ["in-flight-64", uri]))
            .EnsureSuccess(image.Server.Describe());
        await image.Server.StopAndAssertCleanExitAsync();
        var expected = new byte[2 * Mib];
        expected.AsSpan().Fill(0x42);
        TestPattern.AssertEqual(expected, RawImageFile.Read(image.ImagePath, 40L * Mib, 2 * Mib), 40L * Mib, "image file");
    }

    [Fact]
    public async Task SigtermDuringWritesExitsZeroAndKeepsEveryAcknowledgedWrite()
    {
        const int blockSize = 64 * 1024;
        await using var image = await ServedImage.StartRawAsync(32L * Mib);
        var writer = ToolRunner.RunPythonScriptAsync("write_until_disconnected.py",
            [image.Uri(), blockSize.ToString(), "32"], TimeSpan.FromSeconds(90));
        // Let the writer get going (a few MiB on disk), then ask the server to stop.
        var started = System.Diagnostics.Stopwatch.StartNew();
        while (await RawImageFile.AllocatedBytesAsync(image.ImagePath) < 4 * Mib && !writer.IsCompleted)
        {
            Assert.True(started.Elapsed < TimeSpan.FromSeconds(30), $"writer made no progress\n{image.Server.Describe()}");
            await Task.Delay(50);
        }

        await image.Server.StopAndAssertCleanExitAsync();
        var result = (await writer).EnsureSuccess(image.Server.Describe());
        using var state = JsonDocument.Parse(result.Stdout);
        Assert.StartsWith("server closed", state.RootElement.GetProperty("ended_by").GetString());
        var acked = state.RootElement.GetProperty("acked").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        var unacknowledged = state.RootElement.GetProperty("unacknowledged").EnumerateArray()
            .Select(e => e.GetInt32()).ToArray();
        // An acknowledged write must be there; a write still in flight at SIGTERM may or may not have landed.
        for (var block = 0; block < acked.Length; block++)
        {
            var actual = RawImageFile.Read(image.ImagePath, (long)block * blockSize, blockSize);
            var durable = acked[block] >= 0 ? BlockData(acked[block], blockSize) : new byte[blockSize];
            var matchesPending = unacknowledged[block] >= 0 &&
                                 actual.AsSpan().SequenceEqual(BlockData(unacknowledged[block], blockSize));
            Assert.True(matchesPending || actual.AsSpan().SequenceEqual(durable),
                $"block {block}: holds neither the acknowledged write (seed {acked[block]}, -1: never written) nor " +
                $"the one in flight (seed {unacknowledged[block]})\n{image.Server.Describe()}");
        }

        Assert.Contains(acked, seed => seed >= 0);
    }

    /// <summary>The content write_until_disconnected.py writes for a seed.</summary>
    private static byte[] BlockData(int seed, int size)
    {
        var data = new byte[size];
        for (var i = 0; i < size; i += 16)
        {
            System.Buffers.Binary.BinaryPrimitives.WriteUInt64LittleEndian(data.AsSpan(i), (ulong)seed);
            System.Buffers.Binary.BinaryPrimitives.WriteUInt64LittleEndian(data.AsSpan(i + 8), (ulong)i);
        }

        return data;
    }

    [Fact]
    public async Task SigtermWithAnIdleClientConnectedClosesItAndExitsZero()
    {
        await using var image = await ServedImage.StartRawAsync(16L * Mib);
        using var idle = await RawNbdConnection.ConnectAsync(image.Server.Port!.Value);
        await idle.HandshakeWithExportNameAsync();
        await image.Server.StopAndAssertCleanExitAsync(TimeSpan.FromSeconds(15));
        Assert.True(await idle.WaitForServerCloseAsync(TimeSpan.FromSeconds(5)), "idle client not disconnected");
    }

    [Fact]
    public async Task HostileQcow2HeaderIsRefusedWithOneLineNamingTheImageAndField()
    {
        using var folder = new TempDirectory("hostile");
        var image = folder.File("bad.qcow2");
        await QemuImage.CreateQcow2Async(image, "64M");
        using (var file = File.OpenWrite(image))
        {
            file.Position = 20; // cluster_bits
            file.Write([0, 0, 0, 7]);
        }
        var result = await ToolRunner.RunAsync(RepositoryRoot.Launcher, ["serve", image, "--socket", folder.File("s")],
            TimeSpan.FromSeconds(60));
        Assert.Equal(1, result.ExitCode);
        Assert.Contains("bad.qcow2: qcow2 cluster_bits = 7", result.Stderr);
        Assert.DoesNotContain("Unhandled exception", result.Stderr);
        Assert.DoesNotContain("   at ", result.Stderr);
    }
}
