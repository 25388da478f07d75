using System.Buffers;
using NbdQcow.Image;
using NbdQcow.Image.Raw;
using NbdQcow.Protocol;
using NbdQcow.Protocol.Client;
using NbdQcow.Server.Exports;
using NbdQcow.Tests.Unit.HostIo;

namespace NbdQcow.Tests.Unit.Server;

/// <summary>
/// LIST/SET_META_CONTEXT for qemu's namespace, as qemu-nbd answers: an empty LIST or "qemu:" lists allocation depth and
/// every offered bitmap, "qemu:dirty-bitmap:" the bitmaps; SET selects exact names only, each with its own id, and
/// ignores names the export does not offer.
/// </summary>
public sealed class QemuMetaContextNegotiationTests : IDisposable
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);
    private readonly TempDirectory _temp = new();

    public void Dispose() => _temp.Dispose();

    [Fact]
    public async Task List_and_set_answer_the_qemu_contexts_with_their_ids()
    {
        var path = _temp.File("disk.img");
        RawImageCreator.Create(path, 1 << 20);
        var device = ImageOpener.Open(path, new ImageOpenOptions { MaxDirtyAge = null });
        await using var server = InProcessServer.Start(new NbdExport("disk", device, bitmaps: ["daily", "weekly"]));
        using var timeout = new CancellationTokenSource(Timeout);
        await using var session = await NbdOptionSession.StartAsync(await NbdClient.OpenTcpStreamAsync("127.0.0.1", server.Port, timeout.Token), timeout.Token);
        Assert.Equal(NbdOptionReplyType.Ack, (await session.SendOptionAsync(NbdOption.StructuredReply))[^1].Header.Type);

        Assert.Equal([(0u, "base:allocation"), (0u, "qemu:allocation-depth"), (0u, "qemu:dirty-bitmap:daily"), (0u, "qemu:dirty-bitmap:weekly")],
            await MetaAsync(session, NbdOption.ListMetaContext));
        Assert.Equal([(0u, "qemu:allocation-depth"), (0u, "qemu:dirty-bitmap:daily"), (0u, "qemu:dirty-bitmap:weekly")],
            await MetaAsync(session, NbdOption.ListMetaContext, "qemu:"));
        Assert.Equal([(0u, "qemu:dirty-bitmap:daily"), (0u, "qemu:dirty-bitmap:weekly")],
            await MetaAsync(session, NbdOption.ListMetaContext, "qemu:dirty-bitmap:"));
        Assert.Equal([(0u, "qemu:dirty-bitmap:weekly")], await MetaAsync(session, NbdOption.ListMetaContext, "qemu:dirty-bitmap:weekly"));

        // base:allocation first, then the qemu contexts in the order asked; unknown names and bare namespaces select nothing.
        Assert.Equal([(1u, "base:allocation"), (3u, "qemu:dirty-bitmap:daily"), (4u, "qemu:dirty-bitmap:weekly"), (2u, "qemu:allocation-depth")],
            await MetaAsync(session, NbdOption.SetMetaContext, "qemu:dirty-bitmap:daily", "base:allocation", "qemu:dirty-bitmap:weekly",
                "qemu:allocation-depth", "qemu:dirty-bitmap:monthly", "qemu:", "qemu:dirty-bitmap:"));
        Assert.Empty(await MetaAsync(session, NbdOption.SetMetaContext, "qemu:dirty-bitmap:dail", "qemu:dirty-bitmap:dailyx"));
    }

    private static async Task<List<(uint Id, string Name)>> MetaAsync(NbdOptionSession session, NbdOption option, params string[] queries)
    {
        var writer = new ArrayBufferWriter<byte>();
        NbdClientMessageWriter.WriteMetaContextOption(writer, option, "disk", queries);
        // The option header (magic, option, length) is written too: send the payload only.
        var replies = await session.SendOptionAsync(option, writer.WrittenMemory[16..]);
        Assert.Equal(NbdOptionReplyType.Ack, replies[^1].Header.Type);
        var contexts = new List<(uint, string)>();
        foreach (var reply in replies)
        {
            if (reply.Header.Type == NbdOptionReplyType.MetaContext)
            {
                Assert.Equal(NbdParseStatus.Complete, NbdOptionPayloadParser.TryParseMetaContextReply(reply.Payload, out var id, out var name));
                contexts.Add((id, name!));
            }
        }
        return contexts;
    }
}
