using NbdQcow.Tests.Interop.Infrastructure;

namespace NbdQcow.Tests.Interop.Raw;

/// <summary>
/// Clients that announce a large WRITE, send part of its payload and then reset the connection: the buffer budget
/// each one took for the payload comes back, so they cannot use up the server's budget and stall everyone else.
/// </summary>
public sealed class ResetMidPayloadTests
{
    private const int Mib = 1 << 20;
    private const ushort CommandWrite = 1;

    [Fact]
    public async Task ConnectionsResetInTheMiddleOfAWritePayloadGiveTheirBufferBudgetBack()
    {
        await using var image = await ServedImage.StartRawAsync(64L * Mib,
            prepare: path => RawImageFile.Write(path, 0, TestPattern.Bytes(12, Mib)));
        var port = image.Server.Port!.Value;

        // 12 x 32 MiB is more than the whole default budget (256 MiB): were any of it kept, the polite READ waits.
        for (var c = 0; c < 12; c++)
        {
            using var hostile = await RawNbdConnection.ConnectAsync(port);
            await hostile.HandshakeWithExportNameAsync();
            await hostile.SendAsync(RawNbdConnection.Request(CommandWrite, 1, 0, 32 * Mib));
            await hostile.SendAsync(new byte[64 * 1024]);
            await Task.Delay(100); // the server has taken the budget and is reading the payload
            hostile.Reset();
        }

        using var polite = await RawNbdConnection.ConnectAsync(port);
        await polite.HandshakeWithExportNameAsync();
        var read = polite.ReadAsync(0, 1 * Mib, cookie: 7);
        Assert.True(await Task.WhenAny(read, Task.Delay(TimeSpan.FromSeconds(15))) == read,
            "a 1 MiB READ got no reply in 15 s: the reset connections kept their buffer budget");
        var (error, data) = await read;
        Assert.Equal(0u, error);
        TestPattern.AssertEqual(TestPattern.Bytes(12, Mib), data, 0, "polite read");
        await polite.DisconnectAsync();
    }
}
