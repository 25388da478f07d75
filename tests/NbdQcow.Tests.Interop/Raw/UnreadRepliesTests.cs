using System.Diagnostics;
using NbdQcow.Tests.Interop.Infrastructure;

namespace NbdQcow.Tests.Interop.Raw;

/// <summary>
/// Clients that queue large READs and never read the replies: the server holds a bounded amount of memory for
/// them, gives it back when they leave, keeps serving others, and still stops promptly on SIGTERM.
/// </summary>
public sealed class UnreadRepliesTests
{
    private const int Mib = 1 << 20;
    private const uint LargeRead = 32 * Mib;

    [Fact]
    public async Task ClientsNotReadingLargeReadsStayWithinTheBufferBudgetAndMemoryComesBack()
    {
        await using var image = await ServedImage.StartRawAsync(64L * Mib,
            prepare: path => RawImageFile.Write(path, 0, TestPattern.Bytes(11, Mib)));
        var pid = image.Server.ProcessId;
        var port = image.Server.Port!.Value;
        using (var warmUp = await RawNbdConnection.ConnectAsync(port))
        {
            await warmUp.HandshakeWithExportNameAsync();
            Assert.Equal(0u, (await warmUp.ReadAsync(0, 65536, cookie: 1)).Error);
            await warmUp.DisconnectAsync();
        }

        var baseline = ProcessStatus.ResidentBytes(pid);
        var hostile = new List<RawNbdConnection>();
        long peak = 0;
        try
        {
            for (var c = 0; c < 3; c++)
            {
                var connection = await RawNbdConnection.ConnectAsync(port);
                hostile.Add(connection);
                await connection.HandshakeWithExportNameAsync();
                for (var i = 0; i < 16; i++)
                {
                    // Requests are small; the server would answer each with 32 MiB nobody reads.
                    await connection.TrySendAsync(RawNbdConnection.Request(RawNbdConnection.CommandRead, (ulong)i, 0, LargeRead));
                }
            }

            // Let the server take in what it will.
            for (var i = 0; i < 30; i++)
            {
                await Task.Delay(100);
                peak = Math.Max(peak, ProcessStatus.ResidentBytes(pid));
            }

            // A polite client is served meanwhile.
            using (var polite = await RawNbdConnection.ConnectAsync(port))
            {
                await polite.HandshakeWithExportNameAsync();
                var (error, data) = await polite.ReadAsync(4096, 65536, cookie: 5);
                Assert.Equal(0u, error);
                TestPattern.AssertEqual(TestPattern.Bytes(11, Mib).AsSpan(4096, 65536), data, 4096, "polite read");
                await polite.DisconnectAsync();
            }

            peak = Math.Max(peak, ProcessStatus.ResidentBytes(pid));
            image.Server.AssertStillRunning();
            // Default budget 256 MiB; one connection holds at most a quarter of it.
            Assert.True(peak - baseline < 320L * Mib,
                $"resident memory grew by {(peak - baseline) / Mib} MiB (baseline {baseline / Mib} MiB)\n{image.Server.Describe()}");
        }
        finally
        {
            foreach (var connection in hostile)
            {
                connection.Dispose();
            }
        }

        var clock = Stopwatch.StartNew();
        long resident;
        while ((resident = ProcessStatus.ResidentBytes(pid)) - baseline > 64L * Mib && clock.Elapsed < TimeSpan.FromSeconds(15))
        {
            await Task.Delay(250);
        }

        Assert.True(resident - baseline <= 64L * Mib,
            $"resident memory {resident / Mib} MiB 15 s after the clients left (baseline {baseline / Mib} MiB, peak {peak / Mib} MiB)\n{image.Server.Describe()}");
        (await ToolRunner.RunAsync("nbdinfo", ["--size", image.Uri()])).EnsureSuccess(image.Server.Describe());
        await image.Server.StopAndAssertCleanExitAsync();
    }

    [Fact]
    public async Task APoliteClientIsServedEvenWhenClientsNotReadingHoldTheWholeBudget()
    {
        // 64 MiB budget, 32 MiB per connection: two such clients spend it all.
        await using var image = await ServedImage.StartRawAsync(64L * Mib, new ServeOptions
        {
            ExtraArguments = ["--max-buffered-bytes", "64M"],
        }, prepare: path => RawImageFile.Write(path, 0, TestPattern.Bytes(13, Mib)));
        var port = image.Server.Port!.Value;
        var hostile = new List<RawNbdConnection>();
        try
        {
            for (var c = 0; c < 4; c++)
            {
                var connection = await RawNbdConnection.ConnectAsync(port);
                hostile.Add(connection);
                await connection.HandshakeWithExportNameAsync();
                for (var i = 0; i < 8; i++)
                {
                    await connection.TrySendAsync(RawNbdConnection.Request(RawNbdConnection.CommandRead, (ulong)i, 0, LargeRead));
                }
            }

            await Task.Delay(500);
            using var polite = await RawNbdConnection.ConnectAsync(port);
            await polite.HandshakeWithExportNameAsync();
            var clock = Stopwatch.StartNew();
            await polite.SendAsync(RawNbdConnection.Request(RawNbdConnection.CommandRead, 21, 8192, 65536));
            // Served once the server closes the clients that sat on their replies (10 s without progress).
            var reply = await polite.TryReadSimpleReplyOrCloseAsync(TimeSpan.FromSeconds(30));
            Assert.True(reply is { Error: 0, Cookie: 21 }, $"polite READ not answered\n{image.Server.Describe()}");
            var data = await polite.ReceiveExactlyAsync(65536);
            TestPattern.AssertEqual(TestPattern.Bytes(13, Mib).AsSpan(8192, 65536), data, 8192, "polite read");
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(25), $"polite READ took {clock.Elapsed.TotalSeconds:F1} s");
            Assert.Contains("replies it has not read", image.Server.Output);
            await polite.DisconnectAsync();
        }
        finally
        {
            foreach (var connection in hostile)
            {
                connection.Dispose();
            }
        }

        await image.Server.StopAndAssertCleanExitAsync();
    }

    [Fact]
    public async Task SigtermWithAClientNotReadingItsRepliesExitsZeroWithinSeconds()
    {
        await using var image = await ServedImage.StartRawAsync(64L * Mib);
        using var stuck = await RawNbdConnection.ConnectAsync(image.Server.Port!.Value);
        await stuck.HandshakeWithExportNameAsync();
        for (var i = 0; i < 8; i++)
        {
            await stuck.TrySendAsync(RawNbdConnection.Request(RawNbdConnection.CommandRead, (ulong)i, 0, LargeRead));
        }

        await Task.Delay(1000);
        var clock = Stopwatch.StartNew();
        // The harness sends SIGKILL (exit 137) if the server has not exited within 15 s.
        await image.Server.StopAndAssertCleanExitAsync(TimeSpan.FromSeconds(15));
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(12), $"stopping took {clock.Elapsed.TotalSeconds:F1} s\n{image.Server.Describe()}");
        Assert.Contains("replies unread", image.Server.Output);
    }
}
