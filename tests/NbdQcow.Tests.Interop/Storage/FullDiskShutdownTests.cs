using NbdQcow.Tests.Interop.Infrastructure;

namespace NbdQcow.Tests.Interop.Storage;

/// <summary>
/// A shutdown whose last flush fails because the file system is full (a journal that cannot grow) says so once:
/// the close after it fails for the same reason and must not print the same message a second time.
/// </summary>
[Collection("FullStorage")]
public sealed class FullDiskShutdownTests
{
    [Fact]
    public async Task A_shutdown_flush_that_fails_on_a_full_disk_is_reported_once_and_exits_1()
    {
        using var tmpfs = await SmallTmpfs.MountAsync(8);
        var image = tmpfs.File("disk.qcow2");
        await QemuImage.CreateQcow2Async(image, "64M");
        var server = await ServerProcess.StartAsync(new ServeOptions
        {
            ImagePath = image,
            ExtraArguments = ["--journal", "--max-dirty-age", "off"],
        });
        await using (server)
        {
            // Allocating writes never flushed: their mappings wait in memory for the journal.
            using var connection = await RawNbdConnection.ConnectAsync(server.Port!.Value);
            await connection.HandshakeWithExportNameAsync();
            for (var i = 0; i < 32; i++)
            {
                var cookie = (ulong)i + 1;
                await connection.SendAsync(RawNbdConnection.Request(1, cookie, (ulong)i << 20, 65536));
                await connection.SendAsync(Enumerable.Repeat((byte)(i + 1), 65536).ToArray());
                var reply = await connection.TryReadSimpleReplyOrCloseAsync(TimeSpan.FromSeconds(30));
                Assert.True(reply is { Error: 0 } && reply.Value.Cookie == cookie, $"write {i}: {reply}\n{server.Describe()}");
            }
            tmpfs.FillLeaving(0);

            var exitCode = await server.StopAsync();
            Assert.True(exitCode == 1, $"exit code {exitCode}, expected 1 (the shutdown flush failed)\n{server.Describe()}");
            var reports = server.Output.Split('\n').Count(line => line.Contains("No space left on device", StringComparison.Ordinal));
            Assert.True(reports == 1, $"the full disk was reported {reports} times, expected once\n{server.Describe()}");
            Assert.Contains("flushing export 'disk' at shutdown failed", server.Output);
        }
    }
}
