using System.Buffers;
using NbdQcow.Protocol;

namespace NbdQcow.Tests.Unit.Protocol;

public class NbdServerMessageParserTests
{
    private static byte[] Request(bool extended, NbdRequest request)
    {
        var writer = new ArrayBufferWriter<byte>();
        NbdClientMessageWriter.WriteRequest(writer, extended, request);
        return writer.WrittenSpan.ToArray();
    }

    [Theory]
    [InlineData(false, 1)]
    [InlineData(false, 5)]
    [InlineData(false, 28)]
    [InlineData(true, 3)]
    [InlineData(true, 32)]
    public void Request_round_trips_through_writer_and_parser_across_segment_boundaries(bool extended, int segmentLength)
    {
        var sent = new NbdRequest(NbdCommandFlags.Fua | NbdCommandFlags.NoHole, NbdCommand.WriteZeroes, 0x0102030405060708, 0x1122334455667788,
            extended ? 0x1_0000_0001UL : 0xfedcba98UL);
        var bytes = Request(extended, sent).Concat(new byte[] { 9, 9, 9 }).ToArray();

        var status = NbdServerMessageParser.TryParseRequest(Segments.Split(bytes, segmentLength), extended, out var parsed, out var consumed);

        Assert.Equal(NbdParseStatus.Complete, status);
        Assert.Equal(sent, parsed);
        var sequence = Segments.Split(bytes, segmentLength);
        status = NbdServerMessageParser.TryParseRequest(sequence, extended, out _, out consumed);
        Assert.Equal(extended ? 32 : 28, sequence.Slice(0, consumed).Length);
    }

    [Fact]
    public void Compact_request_has_the_spec_layout()
    {
        var bytes = Request(false, new NbdRequest(NbdCommandFlags.Fua, NbdCommand.Write, 7, 4096, 512));
        Assert.Equal(
            Convert.FromHexString("25609513" + "0001" + "0001" + "0000000000000007" + "0000000000001000" + "00000200"),
            bytes);
    }

    [Fact]
    public void Extended_request_has_the_spec_layout_with_a_64_bit_length()
    {
        var bytes = Request(true, new NbdRequest(NbdCommandFlags.None, NbdCommand.Trim, 1, 0, 0x1_0000_0000));
        Assert.Equal(
            Convert.FromHexString("21e41c71" + "0000" + "0004" + "0000000000000001" + "0000000000000000" + "0000000100000000"),
            bytes);
    }

    [Fact]
    public void Every_truncated_request_needs_more_data_and_consumes_nothing()
    {
        var bytes = Request(false, new NbdRequest(NbdCommandFlags.None, NbdCommand.Read, 1, 2, 3));
        for (var length = 0; length < bytes.Length; length++)
        {
            var sequence = new ReadOnlySequence<byte>(bytes, 0, length);
            Assert.Equal(NbdParseStatus.NeedMoreData, NbdServerMessageParser.TryParseRequest(sequence, false, out _, out var consumed));
            Assert.Equal(sequence.Start, consumed);
        }
    }

    [Fact]
    public void Compact_magic_is_rejected_when_extended_headers_were_negotiated()
    {
        var bytes = Request(false, new NbdRequest(NbdCommandFlags.None, NbdCommand.Read, 1, 2, 3)).Concat(new byte[4]).ToArray();
        Assert.Equal(NbdParseStatus.BadMagic, NbdServerMessageParser.TryParseRequest(new ReadOnlySequence<byte>(bytes), true, out _, out _));
    }

    [Fact]
    public void Garbage_is_a_bad_magic()
    {
        var garbage = new byte[64];
        Random.Shared.NextBytes(garbage);
        garbage[0] = 0x00;
        Assert.Equal(NbdParseStatus.BadMagic, NbdServerMessageParser.TryParseRequest(new ReadOnlySequence<byte>(garbage), false, out _, out _));
    }

    [Fact]
    public void Option_header_round_trips_and_leaves_the_payload()
    {
        var writer = new ArrayBufferWriter<byte>();
        NbdClientMessageWriter.WriteExportNameOption(writer, "disk");
        var bytes = writer.WrittenSpan.ToArray();
        var sequence = Segments.Split(bytes, 3);

        Assert.Equal(NbdParseStatus.Complete, NbdServerMessageParser.TryParseOptionHeader(sequence, out var header, out var consumed));

        Assert.Equal(new NbdOptionHeader(NbdOption.ExportName, 4), header);
        Assert.Equal("disk"u8.ToArray(), sequence.Slice(consumed).ToArray());
    }

    [Fact]
    public void Option_header_without_IHAVEOPT_is_a_bad_magic()
    {
        var bytes = new byte[16];
        Assert.Equal(NbdParseStatus.BadMagic, NbdServerMessageParser.TryParseOptionHeader(new ReadOnlySequence<byte>(bytes), out _, out _));
    }

    [Fact]
    public void Truncated_option_header_needs_more_data()
    {
        var writer = new ArrayBufferWriter<byte>();
        NbdClientMessageWriter.WriteOptionHeader(writer, NbdOption.Go, 0);
        Assert.Equal(NbdParseStatus.NeedMoreData,
            NbdServerMessageParser.TryParseOptionHeader(new ReadOnlySequence<byte>(writer.WrittenMemory[..15]), out _, out _));
    }

    [Fact]
    public void Client_flags_round_trip()
    {
        var writer = new ArrayBufferWriter<byte>();
        NbdClientMessageWriter.WriteClientFlags(writer, NbdClientFlags.FixedNewstyle | NbdClientFlags.NoZeroes);
        Assert.Equal(new byte[] { 0, 0, 0, 3 }, writer.WrittenSpan.ToArray());
        Assert.Equal(NbdParseStatus.Complete,
            NbdServerMessageParser.TryParseClientFlags(Segments.Split(writer.WrittenSpan.ToArray(), 1), out var flags, out _));
        Assert.Equal(NbdClientFlags.FixedNewstyle | NbdClientFlags.NoZeroes, flags);
        Assert.Equal(NbdParseStatus.NeedMoreData,
            NbdServerMessageParser.TryParseClientFlags(new ReadOnlySequence<byte>(new byte[3]), out _, out _));
    }
}
