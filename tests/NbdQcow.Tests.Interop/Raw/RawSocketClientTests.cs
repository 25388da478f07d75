using NbdQcow.Tests.Interop.Infrastructure;

namespace NbdQcow.Tests.Interop.Raw;

/// <summary>Misbehaving clients on a plain socket: the server drops them, and only them.</summary>
public sealed class RawSocketClientTests
{
    private const int Mib = 1 << 20;
    private static readonly TimeSpan CloseBound = TimeSpan.FromSeconds(10);

    [Fact]
    public async Task GarbageInsteadOfAHandshakeIsDroppedThenAGoodClientSucceeds()
    {
        await using var image = await ServedImage.StartRawAsync(16L * Mib,
            prepare: path => RawImageFile.Write(path, 0, TestPattern.Bytes(5, Mib)));
        using (var garbage = await RawNbdConnection.ConnectAsync(image.Server.Port!.Value))
        {
            await garbage.TrySendAsync(TestPattern.Bytes(6, 64 * 1024));
            Assert.True(await garbage.WaitForServerCloseAsync(CloseBound),
                $"server kept a garbage-sending connection open\n{image.Server.Describe()}");
        }

        image.Server.AssertStillRunning();
        await AssertGoodClientReads(image);
        await image.Server.StopAndAssertCleanExitAsync();
    }

    [Fact]
    public async Task GarbageOptionAfterTheGreetingIsDroppedThenAGoodClientSucceeds()
    {
        await using var image = await ServedImage.StartRawAsync(16L * Mib,
            prepare: path => RawImageFile.Write(path, 0, TestPattern.Bytes(5, Mib)));
        using (var garbage = await RawNbdConnection.ConnectAsync(image.Server.Port!.Value))
        {
            await garbage.ReadGreetingAsync();
            await garbage.SendAsync(new byte[] { 0, 0, 0, 3 });
            await garbage.TrySendAsync(TestPattern.Bytes(7, 4096));
            Assert.True(await garbage.WaitForServerCloseAsync(CloseBound),
                $"server kept a connection with a bad option magic open\n{image.Server.Describe()}");
        }

        await AssertGoodClientReads(image);
        await image.Server.StopAndAssertCleanExitAsync();
    }

    [Fact]
    public async Task BadRequestMagicClosesOnlyThatConnection()
    {
        await using var image = await ServedImage.StartRawAsync(16L * Mib,
            prepare: path => RawImageFile.Write(path, 0, TestPattern.Bytes(5, Mib)));
        var port = image.Server.Port!.Value;
        using var good = await RawNbdConnection.ConnectAsync(port);
        Assert.Equal(16UL * Mib, await good.HandshakeWithExportNameAsync());
        using (var bad = await RawNbdConnection.ConnectAsync(port))
        {
            Assert.Equal(16UL * Mib, await bad.HandshakeWithExportNameAsync());
            var request = RawNbdConnection.Request(RawNbdConnection.CommandRead, 1, 0, 512);
            request[0] ^= 0xff; // bad magic
            await bad.TrySendAsync(request);
            Assert.True(await bad.WaitForServerCloseAsync(CloseBound),
                $"server kept a connection with a bad request magic open\n{image.Server.Describe()}");
        }

        var (error, data) = await good.ReadAsync(4096, 8192, cookie: 77);
        Assert.Equal(0u, error);
        TestPattern.AssertEqual(TestPattern.Bytes(5, Mib).AsSpan(4096, 8192), data, 4096, "read on the other connection");
        await good.DisconnectAsync();
        await AssertGoodClientReads(image);
        await image.Server.StopAndAssertCleanExitAsync();
    }

    [Fact]
    public async Task ClientVanishingMidRequestDoesNotDisturbTheServer()
    {
        await using var image = await ServedImage.StartRawAsync(16L * Mib,
            prepare: path => RawImageFile.Write(path, 0, TestPattern.Bytes(5, Mib)));
        for (var i = 0; i < 3; i++)
        {
            using var vanishing = await RawNbdConnection.ConnectAsync(image.Server.Port!.Value);
            await vanishing.HandshakeWithExportNameAsync();
            // Half a WRITE header, or a full header with half its payload, then the socket closes.
            var write = RawNbdConnection.Request(1, 9, 0, 4096);
            await vanishing.SendAsync(i == 0 ? write.AsMemory(0, 13) : write.Concat(new byte[1000]).ToArray());
        }

        image.Server.AssertStillRunning();
        await AssertGoodClientReads(image);
        await image.Server.StopAndAssertCleanExitAsync();
    }

    [Fact]
    public async Task ReadLongerThanThirtyTwoMebibytesGetsAnErrorAndTheConnectionLivesOn()
    {
        await using var image = await ServedImage.StartRawAsync(128L * Mib,
            prepare: path => RawImageFile.Write(path, 0, TestPattern.Bytes(5, Mib)));
        using var connection = await RawNbdConnection.ConnectAsync(image.Server.Port!.Value);
        await connection.HandshakeWithExportNameAsync();
        var (error, _) = await connection.ReadAsync(0, 64 * Mib, cookie: 1);
        Assert.NotEqual(0u, error);
        var (goodError, data) = await connection.ReadAsync(0, 4096, cookie: 2);
        Assert.Equal(0u, goodError);
        TestPattern.AssertEqual(TestPattern.Bytes(5, Mib).AsSpan(0, 4096), data, 0, "read after the refused one");
        await connection.DisconnectAsync();
        await image.Server.StopAndAssertCleanExitAsync();
    }

    [Fact]
    public async Task WriteLongerThanThirtyTwoMebibytesIsRefusedAndWritesNothing()
    {
        await using var image = await ServedImage.StartRawAsync(128L * Mib);
        using var connection = await RawNbdConnection.ConnectAsync(image.Server.Port!.Value);
        await connection.HandshakeWithExportNameAsync();
        // A 48 MiB WRITE: the server may answer at once and hang up, or skip the payload and answer; never write it.
        var payload = new byte[48 * Mib];
        payload.AsSpan().Fill(0xab);
        await connection.SendAsync(RawNbdConnection.Request(1, 5, 0, (uint)payload.Length));
        await connection.TrySendAsync(payload);
        var answered = await connection.TryReadSimpleReplyOrCloseAsync(TimeSpan.FromSeconds(20));
        Assert.True(answered is null || answered.Value.Error != 0,
            $"oversized write accepted (reply {answered})\n{image.Server.Describe()}");
        if (answered is not null)
        {
            // The connection stayed in sync: a read on it still works.
            var (error, data) = await connection.ReadAsync(0, 4096, cookie: 6);
            Assert.Equal(0u, error);
            TestPattern.AssertEqual(new byte[4096], data, 0, "read after the refused write");
        }

        image.Server.AssertStillRunning();
        await AssertGoodClientReadsZeroes(image);
        await image.Server.StopAndAssertCleanExitAsync();
    }

    private static async Task AssertGoodClientReadsZeroes(ServedImage image) =>
        (await ToolRunner.RunAsync("qemu-io", ["-f", "raw", "-c", "read -P 0 0 48M", image.Uri()]))
        .EnsureSuccess(image.Server.Describe());

    private static async Task AssertGoodClientReads(ServedImage image)
    {
        var copy = image.Folder.File("check.raw");
        File.Delete(copy);
        (await ToolRunner.RunAsync("qemu-img", ["convert", "-f", "raw", "-O", "raw", image.Uri(), copy]))
            .EnsureSuccess(image.Server.Describe());
        TestPattern.AssertEqual(TestPattern.Bytes(5, Mib), RawImageFile.Read(copy, 0, Mib), 0, "good client's read");
    }
}
