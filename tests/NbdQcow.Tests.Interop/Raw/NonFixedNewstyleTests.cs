using System.Buffers.Binary;
using NbdQcow.Tests.Interop.Infrastructure;

namespace NbdQcow.Tests.Interop.Raw;

/// <summary>
/// A client that leaves NBD_FLAG_C_FIXED_NEWSTYLE out of its flags speaks the original newstyle: it understands no
/// option replies, so NBD_OPT_EXPORT_NAME is all it may send.
/// </summary>
public sealed class NonFixedNewstyleTests
{
    private const int Mib = 1 << 20;
    private const uint OptionList = 3;

    [Fact]
    public async Task AnyOptionButExportNameFromANonFixedClientClosesWithoutAReply()
    {
        await using var image = await ServedImage.StartRawAsync(16L * Mib);
        using var client = await RawNbdConnection.ConnectAsync(image.Server.Port!.Value);
        await client.ReadGreetingAsync();
        await client.SendAsync(Flags(0));
        await client.SendAsync(Option(OptionList, []));
        var reply = await client.ReceiveUntilCloseAsync(TimeSpan.FromSeconds(5));
        Assert.True(reply is not null, $"server kept the connection open\n{image.Server.Describe()}");
        Assert.Empty(reply);
        await image.Server.StopAndAssertCleanExitAsync();
    }

    [Fact]
    public async Task ExportNameFromANonFixedClientIsServed()
    {
        await using var image = await ServedImage.StartRawAsync(16L * Mib);
        using var client = await RawNbdConnection.ConnectAsync(image.Server.Port!.Value);
        await client.ReadGreetingAsync();
        await client.SendAsync(Flags(0));
        await client.SendAsync(Option(RawNbdConnection.OptionExportName, []));
        var reply = await client.ReceiveExactlyAsync(8 + 2 + 124); // no NO_ZEROES: the 124 zero bytes follow
        Assert.Equal(16UL * Mib, BinaryPrimitives.ReadUInt64BigEndian(reply));
        Assert.Equal(0u, (await client.ReadAsync(0, 4096, cookie: 3)).Error);
        await client.DisconnectAsync();
        await image.Server.StopAndAssertCleanExitAsync();
    }

    private static byte[] Flags(uint flags)
    {
        var bytes = new byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(bytes, flags);
        return bytes;
    }

    private static byte[] Option(uint option, byte[] data)
    {
        var bytes = new byte[16 + data.Length];
        BinaryPrimitives.WriteUInt64BigEndian(bytes, RawNbdConnection.OptionMagic);
        BinaryPrimitives.WriteUInt32BigEndian(bytes.AsSpan(8), option);
        BinaryPrimitives.WriteUInt32BigEndian(bytes.AsSpan(12), (uint)data.Length);
        data.CopyTo(bytes, 16);
        return bytes;
    }
}
