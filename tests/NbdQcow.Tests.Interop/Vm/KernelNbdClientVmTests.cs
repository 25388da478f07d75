using System.Diagnostics;
using System.Globalization;
using NbdQcow.Tests.Interop.Infrastructure;
using Xunit.Abstractions;

namespace NbdQcow.Tests.Interop.Vm;

/// <summary>
/// The real Linux client: a guest booted under qemu (software emulation) attaches an export of `./nbdqcow serve`
/// with nbd-client and the kernel NBD driver, drives the raw device and an ext4 filesystem on it and checks what it
/// reads back (tests/vm/guest-init.sh); the host then checks the image with qemu-img, e2fsck and debugfs against the
/// manifest of files the guest printed. The tests of this class run one after the other (one collection).
/// </summary>
public sealed class KernelNbdClientVmTests(ITestOutputHelper output)
{
    private const long DeviceSize = 256L * 1024 * 1024;
    private const string ExportName = "vmdisk";
    private static readonly TimeSpan GuestTimeout = TimeSpan.FromMinutes(4);

    // Both connection counts on both cluster sizes across the two tests: four boots of ~40-60 s keep the class
    // within its CI budget of 5 minutes. Raw images pass too (tests/vm/try-server.sh by hand).
    [Theory]
    [InlineData("qcow2", 65536, 1)]
    [InlineData("qcow2", 4096, 2)]
    public async Task KernelClientFilesystemSurvivesReconnectFstrimAndServerStop(string format, int clusterSize,
        int connections)
    {
        await RunAsync(format, clusterSize, connections, GuestMode.Full);
    }

    [Theory]
    [InlineData("qcow2", 65536, 2)]
    [InlineData("qcow2", 4096, 1)]
    public async Task ServerKilledAfterGuestUnmountLeavesCleanImageWithEveryFile(string format, int clusterSize,
        int connections)
    {
        await RunAsync(format, clusterSize, connections, GuestMode.Crash);
    }

    private async Task RunAsync(string format, int clusterSize, int connections, GuestMode mode)
    {
        var guestDirectory = await GuestBuild.EnsureBuiltAsync();
        using var work = new TempDirectory("vm");
        var image = work.File($"{ExportName}.{format}");
        await CreateImageAsync(image, format, clusterSize);

        await using var server = await ServerProcess.StartAsync(
            new ServeOptions { ImagePath = image, ExportName = ExportName });
        var clock = Stopwatch.StartNew();
        await using (var guest = GuestMachine.Start(guestDirectory, work.Path, server.Port!.Value, ExportName,
                         connections, DeviceSize, mode))
        {
            if (mode == GuestMode.Crash)
            {
                // A guest that fails before its crash point prints its RESULT line instead.
                if (await guest.WaitForLineAsync(GuestTimeout, "CRASH-POINT", GuestMachine.ResultPrefix) ==
                    "CRASH-POINT")
                {
                    server.AssertStillRunning();
                    // The guest's unmount has flushed; the server dies without any chance to write more.
                    using var victim = Process.GetProcessById(server.ProcessId);
                    victim.Kill();
                }
            }

            try
            {
                await guest.AssertPassedAsync(GuestTimeout - clock.Elapsed, server.Describe);
            }
            finally
            {
                // The guest's progress lines carry its uptime: where the time went, in CI logs too.
                output.WriteLine($"guest ran {clock.Elapsed.TotalSeconds:F1} s; its steps:");
                foreach (var line in guest.SerialLines().Where(l => l.Contains("vmtest[", StringComparison.Ordinal)))
                {
                    output.WriteLine(line);
                }
            }

            // nbd-client -C N opens N connections; the full run attaches twice (before and after the reconnect).
            var expectedConnections = mode == GuestMode.Full ? 2 * connections : connections;
            Assert.True(guest.ConnectionCount == expectedConnections,
                $"the guest opened {guest.ConnectionCount} connections, expected {expectedConnections}\n{guest.Describe()}");

            if (mode == GuestMode.Full)
            {
                await server.StopAndAssertCleanExitAsync();
            }
            else
            {
                await server.StopAsync();
            }

            var manifest = GuestManifest.Parse(guest.SerialLines());
            await GuestImageCheck.AssertHoldsManifestAsync(image, format, manifest, work.Path);
        }
    }

    private static async Task CreateImageAsync(string path, string format, int clusterSize)
    {
        var size = DeviceSize.ToString(CultureInfo.InvariantCulture);
        var arguments = format == "qcow2"
            ? new[] { "create", "-f", "qcow2", "-o", $"cluster_size={clusterSize}", path, size }
            : new[] { "create", "-f", "raw", path, size };
        (await ToolRunner.RunAsync("qemu-img", arguments)).EnsureSuccess("creating the image");
    }
}
