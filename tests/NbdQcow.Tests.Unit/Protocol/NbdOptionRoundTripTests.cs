using System.Buffers;
using NbdQcow.Protocol;

namespace NbdQcow.Tests.Unit.Protocol;

/// <summary>Option writers (both sides) against option parsers (both sides).</summary>
public class NbdOptionRoundTripTests
{
    private static (NbdOptionHeader Header, byte[] Payload) ParseClientOption(ArrayBufferWriter<byte> writer)
    {
        var sequence = Segments.Split(writer.WrittenSpan.ToArray(), 3);
        Assert.Equal(NbdParseStatus.Complete, NbdServerMessageParser.TryParseOptionHeader(sequence, out var header, out var consumed));
        var payload = sequence.Slice(consumed).ToArray();
        Assert.Equal(header.Length, (uint)payload.Length);
        return (header, payload);
    }

    private static List<(NbdOptionReplyHeader Header, byte[] Payload)> ParseServerReplies(ArrayBufferWriter<byte> writer)
    {
        var replies = new List<(NbdOptionReplyHeader, byte[])>();
        var sequence = Segments.Split(writer.WrittenSpan.ToArray(), 6);
        while (!sequence.IsEmpty)
        {
            Assert.Equal(NbdParseStatus.Complete, NbdClientMessageParser.TryParseOptionReplyHeader(sequence, out var header, out var consumed));
            sequence = sequence.Slice(consumed);
            replies.Add((header, sequence.Slice(0, header.Length).ToArray()));
            sequence = sequence.Slice(header.Length);
        }
        return replies;
    }

    [Fact]
    public void Go_option_round_trips_name_and_info_requests()
    {
        var writer = new ArrayBufferWriter<byte>();
        NbdClientMessageWriter.WriteInfoOption(writer, NbdOption.Go, "disk", [NbdInfoType.Name, NbdInfoType.BlockSize]);
        var (header, payload) = ParseClientOption(writer);
        Assert.Equal(NbdOption.Go, header.Option);
        Assert.Equal(Convert.FromHexString("00000004" + "6469736b" + "0002" + "0001" + "0003"), payload);

        Assert.Equal(NbdParseStatus.Complete, NbdOptionPayloadParser.TryParseInfoRequest(payload, out var request));
        Assert.Equal("disk", request!.ExportName);
        Assert.Equal([NbdInfoType.Name, NbdInfoType.BlockSize], request.Requests);
    }

    [Theory]
    [InlineData("")]                      // no name length
    [InlineData("00000005" + "6469736b")] // name longer than payload
    [InlineData("00000000" + "0001")]     // one info request promised, none present
    [InlineData("00000000" + "0000" + "00")] // trailing byte
    public void Malformed_info_requests_are_invalid(string hex)
    {
        Assert.Equal(NbdParseStatus.Invalid, NbdOptionPayloadParser.TryParseInfoRequest(Convert.FromHexString(hex), out _));
    }

    [Fact]
    public void Meta_context_option_round_trips_export_and_queries()
    {
        var writer = new ArrayBufferWriter<byte>();
        NbdClientMessageWriter.WriteMetaContextOption(writer, NbdOption.SetMetaContext, "d", ["base:allocation", "qemu:dirty-bitmap:x"]);
        var (header, payload) = ParseClientOption(writer);
        Assert.Equal(NbdOption.SetMetaContext, header.Option);
        Assert.Equal(NbdParseStatus.Complete, NbdOptionPayloadParser.TryParseMetaContextRequest(payload, out var request));
        Assert.Equal("d", request!.ExportName);
        Assert.Equal(["base:allocation", "qemu:dirty-bitmap:x"], request.Queries);
    }

    [Theory]
    [InlineData("00000000")]                                   // no query count
    [InlineData("00000000" + "00000001")]                      // one query promised, none present
    [InlineData("00000000" + "ffffffff" + "00000000")]         // absurd count
    [InlineData("00000000" + "00000001" + "00000009" + "41")]  // query longer than payload
    public void Malformed_meta_context_requests_are_invalid(string hex)
    {
        Assert.Equal(NbdParseStatus.Invalid, NbdOptionPayloadParser.TryParseMetaContextRequest(Convert.FromHexString(hex), out _));
    }

    [Fact]
    public void Strings_longer_than_4096_bytes_are_refused()
    {
        var writer = new ArrayBufferWriter<byte>();
        NbdClientMessageWriter.WriteInfoOption(writer, NbdOption.Info, new string('a', 4097), []);
        var (_, payload) = ParseClientOption(writer);
        Assert.Equal(NbdParseStatus.Invalid, NbdOptionPayloadParser.TryParseInfoRequest(payload, out _));
    }

    [Fact]
    public void Info_replies_round_trip_into_export_info()
    {
        var writer = new ArrayBufferWriter<byte>();
        var flags = NbdTransmissionFlags.HasFlags | NbdTransmissionFlags.SendFlush | NbdTransmissionFlags.CanMultiConn;
        NbdServerMessageWriter.WriteInfoExport(writer, NbdOption.Go, 1UL << 40, flags);
        NbdServerMessageWriter.WriteInfoString(writer, NbdOption.Go, NbdInfoType.Name, "disk");
        NbdServerMessageWriter.WriteInfoString(writer, NbdOption.Go, NbdInfoType.Description, "a disk");
        NbdServerMessageWriter.WriteInfoBlockSize(writer, NbdOption.Go, 1, 4096, 32 << 20);
        NbdServerMessageWriter.WriteOptionAck(writer, NbdOption.Go);

        var replies = ParseServerReplies(writer);
        Assert.Equal(5, replies.Count);
        var info = new NbdExportInfo();
        foreach (var (header, payload) in replies.Take(4))
        {
            Assert.Equal(NbdOptionReplyType.Info, header.Type);
            Assert.Equal(NbdParseStatus.Complete, NbdOptionPayloadParser.TryParseInfoReply(payload, info, out info));
        }
        Assert.Equal(NbdOptionReplyType.Ack, replies[4].Header.Type);
        Assert.Equal(new NbdExportInfo
        {
            Name = "disk",
            Size = 1UL << 40,
            Flags = flags,
            Description = "a disk",
            MinimumBlockSize = 1,
            PreferredBlockSize = 4096,
            MaximumBlockSize = 32 << 20,
        }, info);
    }

    [Fact]
    public void Info_export_reply_has_the_spec_layout()
    {
        var writer = new ArrayBufferWriter<byte>();
        NbdServerMessageWriter.WriteInfoExport(writer, NbdOption.Info, 0x100000, NbdTransmissionFlags.HasFlags | NbdTransmissionFlags.ReadOnly);
        Assert.Equal(Convert.FromHexString("0003e889045565a9" + "00000006" + "00000003" + "0000000c" + "0000" + "0000000000100000" + "0003"),
            writer.WrittenSpan.ToArray());
    }

    [Fact]
    public void Unknown_info_types_are_ignored_and_short_known_ones_are_invalid()
    {
        var info = new NbdExportInfo { Name = "x" };
        Assert.Equal(NbdParseStatus.Complete, NbdOptionPayloadParser.TryParseInfoReply(Convert.FromHexString("00ff0102"), info, out var same));
        Assert.Same(info, same);
        Assert.Equal(NbdParseStatus.Invalid, NbdOptionPayloadParser.TryParseInfoReply(Convert.FromHexString("0000" + "00"), info, out _));
        Assert.Equal(NbdParseStatus.Invalid, NbdOptionPayloadParser.TryParseInfoReply(Convert.FromHexString("0003" + "00000001"), info, out _));
    }

    [Fact]
    public void Server_reply_carries_name_and_description()
    {
        var writer = new ArrayBufferWriter<byte>();
        NbdServerMessageWriter.WriteServerReply(writer, "disk", "the disk");
        var replies = ParseServerReplies(writer);
        Assert.Equal(NbdOptionReplyType.Server, replies[0].Header.Type);
        Assert.Equal(NbdOption.List, replies[0].Header.Option);
        Assert.Equal(NbdParseStatus.Complete, NbdOptionPayloadParser.TryParseServerReply(replies[0].Payload, out var name, out var description));
        Assert.Equal(("disk", "the disk"), (name, description));
    }

    [Fact]
    public void Meta_context_reply_carries_id_and_name()
    {
        var writer = new ArrayBufferWriter<byte>();
        NbdServerMessageWriter.WriteMetaContextReply(writer, NbdOption.SetMetaContext, 1, "base:allocation");
        var replies = ParseServerReplies(writer);
        Assert.Equal(NbdOptionReplyType.MetaContext, replies[0].Header.Type);
        Assert.Equal(NbdParseStatus.Complete, NbdOptionPayloadParser.TryParseMetaContextReply(replies[0].Payload, out var id, out var name));
        Assert.Equal((1U, "base:allocation"), (id, name));
        Assert.Equal(NbdParseStatus.Invalid, NbdOptionPayloadParser.TryParseMetaContextReply(new byte[3], out _, out _));
    }

    [Fact]
    public void Option_error_has_bit_31_and_the_message_as_payload()
    {
        var writer = new ArrayBufferWriter<byte>();
        NbdServerMessageWriter.WriteOptionError(writer, NbdOption.Go, NbdOptionReplyType.ErrUnknown, "no such export");
        var replies = ParseServerReplies(writer);
        Assert.True(replies[0].Header.IsError);
        Assert.Equal(0x80000006u, (uint)replies[0].Header.Type);
        Assert.Equal("no such export"u8.ToArray(), replies[0].Payload);
        Assert.Equal(NbdParseStatus.BadMagic,
            NbdClientMessageParser.TryParseOptionReplyHeader(new ReadOnlySequence<byte>(new byte[20]), out _, out _));
        Assert.Equal(NbdParseStatus.NeedMoreData,
            NbdClientMessageParser.TryParseOptionReplyHeader(new ReadOnlySequence<byte>(writer.WrittenMemory[..19]), out _, out _));
    }
}
