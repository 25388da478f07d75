using System.Diagnostics;
using System.Security.Cryptography;
using NbdQcow.Tests.Interop.Infrastructure;

namespace NbdQcow.Tests.Interop.Raw;

/// <summary>
/// Clients that hold the server's buffer budget by moving their bytes too slowly: one announces a 32 MiB WRITE and
/// trickles its payload, others read their replies at a crawl. While a polite client waits for buffer space, the
/// server closes them (one log line naming each) and the polite client, a real libnbd one, is served.
/// </summary>
public sealed class SlowClientBudgetTests
{
    private const int Mib = 1 << 20;
    private const ushort CommandWrite = 1;

    [Fact]
    public async Task A_client_trickling_a_large_write_payload_is_closed_and_a_polite_client_is_served()
    {
        // The smallest budget: one 32 MiB payload spends it all.
        await using var image = await ServedImage.StartRawAsync(64L * Mib, new ServeOptions
        {
            ExtraArguments = ["--max-buffered-bytes", "32M"],
        }, prepare: path => RawImageFile.Write(path, 0, TestPattern.Bytes(21, Mib)));
        using var hostile = await RawNbdConnection.ConnectAsync(image.Server.Port!.Value);
        await hostile.HandshakeWithExportNameAsync();
        await hostile.SendAsync(RawNbdConnection.Request(CommandWrite, 1, 0, 32 * Mib));
        // One byte a second: the connection is alive, the payload never makes useful progress.
        using var stopTrickle = new CancellationTokenSource(TimeSpan.FromSeconds(45));
        var trickle = Task.Run(async () =>
        {
            while (!stopTrickle.IsCancellationRequested && await hostile.TrySendAsync(new byte[1]))
            {
                await Task.Delay(1000);
            }
        });
        await Task.Delay(1000); // the server has granted the payload its 32 MiB

        var clock = Stopwatch.StartNew();
        await AssertPoliteLibnbdReadServedAsync(image, TestPattern.Bytes(21, Mib));
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(25), $"polite READ took {clock.Elapsed.TotalSeconds:F1} s");
        Assert.True(await hostile.WaitForServerCloseAsync(TimeSpan.FromSeconds(5)), "the trickling client was not closed");
        Assert.Contains("for a WRITE payload it announced and does not send", image.Server.Output);
        stopTrickle.Cancel();
        await trickle;
        await image.Server.StopAndAssertCleanExitAsync();
    }

    [Fact]
    public async Task Clients_reading_their_replies_at_a_crawl_are_closed_and_a_polite_client_is_served()
    {
        // 64 MiB budget, 32 MiB per connection: two slow readers hold it all.
        await using var image = await ServedImage.StartRawAsync(64L * Mib, new ServeOptions
        {
            ExtraArguments = ["--max-buffered-bytes", "64M"],
        }, prepare: path => RawImageFile.Write(path, 0, TestPattern.Bytes(22, Mib)));
        var port = image.Server.Port!.Value;
        var slow = new List<RawNbdConnection>();
        var readers = new List<Task<long>>();
        using var stopReading = new CancellationTokenSource(TimeSpan.FromSeconds(45));
        try
        {
            for (var c = 0; c < 2; c++)
            {
                var connection = await RawNbdConnection.ConnectAsync(port);
                slow.Add(connection);
                await connection.HandshakeWithExportNameAsync();
                for (var i = 0; i < 4; i++)
                {
                    await connection.SendAsync(RawNbdConnection.Request(RawNbdConnection.CommandRead, (ulong)i, 0, 32 * Mib));
                }
                // About 500 KiB/s: well above 1 MiB per 10 s, but 32 MiB would take more than a minute to come back.
                readers.Add(Task.Run(async () =>
                {
                    var buffer = new byte[50 * 1024];
                    var clock = Stopwatch.StartNew();
                    long total = 0;
                    while (!stopReading.IsCancellationRequested)
                    {
                        // Paced by the clock: 50 KiB per 100 ms since the start, whatever size each receive returns.
                        var due = (clock.ElapsedMilliseconds / 100 + 1) * buffer.Length;
                        if (total >= due)
                        {
                            await Task.Delay(20);
                            continue;
                        }
                        var n = await connection.ReceiveSomeAsync(buffer.AsMemory(0, (int)Math.Min(buffer.Length, due - total)), TimeSpan.FromSeconds(1));
                        if (n == 0)
                        {
                            break;
                        }
                        total += Math.Max(n, 0);
                    }
                    return total;
                }));
            }
            await Task.Delay(1000);

            var clock = Stopwatch.StartNew();
            await AssertPoliteLibnbdReadServedAsync(image, TestPattern.Bytes(22, Mib));
            // Closed after about 10 s; a slow reader would otherwise give a 32 MiB reply's share back only after
            // taking most of it, more than 30 s at its pace.
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(22), $"polite READ took {clock.Elapsed.TotalSeconds:F1} s");
            Assert.Contains("of replies it has not read", image.Server.Output);
            stopReading.Cancel();
            foreach (var reader in readers)
            {
                // Proof the pace was above the old rule's 1 MiB per 10 s: the readers were not simply stuck.
                var total = await reader;
                Assert.True(total >= 4 * Mib, $"a slow reader took only {total / 1024} KiB");
            }
        }
        finally
        {
            stopReading.Cancel();
            await Task.WhenAll(readers);
            foreach (var connection in slow)
            {
                connection.Dispose();
            }
        }
        await image.Server.StopAndAssertCleanExitAsync();
    }

    /// <summary>libnbd reads 64 KiB at 4 KiB; bounded at 40 s (the slow clients are closed after about 10 s).</summary>
    private static async Task AssertPoliteLibnbdReadServedAsync(ServedImage image, byte[] expected)
    {
        const string script = "import sys, hashlib, nbd\n"
            + "h = nbd.NBD()\n"
            + "h.connect_uri(sys.argv[1])\n"
            + "print(hashlib.sha256(h.pread(65536, 4096)).hexdigest())\n"
            + "h.shutdown()\n";
        var result = await ToolRunner.RunAsync(ToolRunner.Python, ["-c", script, image.Uri()], TimeSpan.FromSeconds(40));
        result.EnsureSuccess(image.Server.Describe());
        var want = Convert.ToHexStringLower(SHA256.HashData(expected.AsSpan(4096, 65536)));
        Assert.Equal(want, result.Stdout.Trim());
    }
}
