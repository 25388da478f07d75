using System.Buffers;
using NbdQcow.Protocol;

namespace NbdQcow.Tests.Unit.Protocol;

/// <summary>Server-side reply writers against client-side parsers, and against the byte layouts of the spec.</summary>
public class NbdReplyRoundTripTests
{
    private static (NbdReplyHeader Header, byte[] Payload) ParseOne(ArrayBufferWriter<byte> writer, bool extended, int segmentLength = 7)
    {
        var sequence = Segments.Split(writer.WrittenSpan.ToArray(), segmentLength);
        Assert.Equal(NbdParseStatus.Complete, NbdClientMessageParser.TryParseReplyHeader(sequence, extended, out var header, out var consumed));
        return (header, sequence.Slice(consumed).ToArray());
    }

    [Fact]
    public void Greeting_is_NBDMAGIC_IHAVEOPT_and_flags_and_parses_back()
    {
        var writer = new ArrayBufferWriter<byte>();
        NbdServerMessageWriter.WriteGreeting(writer, NbdHandshakeFlags.FixedNewstyle | NbdHandshakeFlags.NoZeroes);
        Assert.Equal("NBDMAGICIHAVEOPT"u8.ToArray().Concat(new byte[] { 0, 3 }).ToArray(), writer.WrittenSpan.ToArray());

        Assert.Equal(NbdParseStatus.Complete, NbdClientMessageParser.TryParseGreeting(Segments.Split(writer.WrittenSpan.ToArray(), 5), out var flags, out _));
        Assert.Equal(NbdHandshakeFlags.FixedNewstyle | NbdHandshakeFlags.NoZeroes, flags);
        Assert.Equal(NbdParseStatus.NeedMoreData, NbdClientMessageParser.TryParseGreeting(new ReadOnlySequence<byte>(writer.WrittenMemory[..17]), out _, out _));
        Assert.Equal(NbdParseStatus.BadMagic, NbdClientMessageParser.TryParseGreeting(new ReadOnlySequence<byte>(new byte[18]), out _, out _));
    }

    [Fact]
    public void Simple_reply_has_the_spec_layout_and_parses_as_done()
    {
        var writer = new ArrayBufferWriter<byte>();
        NbdServerMessageWriter.WriteSimpleReply(writer, NbdErrno.NoSpace, 42);
        Assert.Equal(Convert.FromHexString("67446698" + "0000001c" + "000000000000002a"), writer.WrittenSpan.ToArray());

        var (header, payload) = ParseOne(writer, extended: false);
        Assert.Equal(NbdReplyStyle.Simple, header.Style);
        Assert.Equal(NbdErrno.NoSpace, header.Error);
        Assert.Equal(42UL, header.Cookie);
        Assert.True(header.IsDone);
        Assert.Empty(payload);
    }

    [Fact]
    public void Structured_chunk_header_has_the_spec_layout()
    {
        var writer = new ArrayBufferWriter<byte>();
        NbdServerMessageWriter.WriteChunkHeader(writer, NbdReplyStyle.Structured, NbdReplyFlags.Done, NbdReplyType.OffsetData, 5, 999, 0x10);
        Assert.Equal(Convert.FromHexString("668e33ef" + "0001" + "0001" + "0000000000000005" + "00000010"), writer.WrittenSpan.ToArray());
    }

    [Fact]
    public void Extended_chunk_header_has_the_spec_layout_and_echoes_the_request_offset()
    {
        var writer = new ArrayBufferWriter<byte>();
        NbdServerMessageWriter.WriteChunkHeader(writer, NbdReplyStyle.Extended, NbdReplyFlags.Done, NbdReplyType.None, 5, 0x2000, 0);
        Assert.Equal(Convert.FromHexString("6e8a278c" + "0001" + "0000" + "0000000000000005" + "0000000000002000" + "0000000000000000"),
            writer.WrittenSpan.ToArray());

        var (header, _) = ParseOne(writer, extended: true);
        Assert.Equal(NbdReplyStyle.Extended, header.Style);
        Assert.Equal(0x2000UL, header.Offset);
        Assert.True(header.IsDone);
    }

    [Fact]
    public void Structured_header_refuses_a_payload_longer_than_32_bits()
    {
        var writer = new ArrayBufferWriter<byte>();
        Assert.Throws<ArgumentOutOfRangeException>(() =>
            NbdServerMessageWriter.WriteChunkHeader(writer, NbdReplyStyle.Structured, 0, NbdReplyType.None, 1, 0, 1UL << 32));
    }

    [Fact]
    public void Success_with_extended_headers_is_a_NONE_chunk_and_a_simple_reply_otherwise()
    {
        var extended = new ArrayBufferWriter<byte>();
        NbdServerMessageWriter.WriteSuccess(extended, NbdReplyStyle.Extended, 9, 4096);
        var (header, payload) = ParseOne(extended, extended: true);
        Assert.Equal(NbdReplyType.None, header.Type);
        Assert.True(header.IsDone);
        Assert.Empty(payload);

        var structured = new ArrayBufferWriter<byte>();
        NbdServerMessageWriter.WriteSuccess(structured, NbdReplyStyle.Structured, 9, 4096);
        Assert.Equal(NbdReplyStyle.Simple, ParseOne(structured, extended: false).Header.Style);
    }

    [Theory]
    [InlineData(NbdReplyStyle.Structured)]
    [InlineData(NbdReplyStyle.Extended)]
    public void Error_chunk_carries_errno_and_message(NbdReplyStyle style)
    {
        var writer = new ArrayBufferWriter<byte>();
        NbdServerMessageWriter.WriteError(writer, style, 3, 100, NbdErrno.Io, "disk on fire", preferChunk: true);
        var (header, payload) = ParseOne(writer, style == NbdReplyStyle.Extended);
        Assert.Equal(NbdReplyType.Error, header.Type);
        Assert.True(header.IsDone);
        Assert.Equal((ulong)payload.Length, header.Length);
        Assert.Equal(NbdParseStatus.Complete, NbdChunkPayloadParser.TryParseError(payload, header.Type, out var error, out var message, out var offset));
        Assert.Equal(NbdErrno.Io, error);
        Assert.Equal("disk on fire", message);
        Assert.Null(offset);
    }

    [Fact]
    public void Error_in_structured_style_without_chunk_preference_is_a_simple_reply()
    {
        var writer = new ArrayBufferWriter<byte>();
        NbdServerMessageWriter.WriteError(writer, NbdReplyStyle.Structured, 3, 0, NbdErrno.PermissionDenied, "ro", preferChunk: false);
        var (header, _) = ParseOne(writer, false);
        Assert.Equal(NbdReplyStyle.Simple, header.Style);
        Assert.Equal(NbdErrno.PermissionDenied, header.Error);
    }

    [Fact]
    public void Error_offset_chunk_carries_the_failing_offset()
    {
        var writer = new ArrayBufferWriter<byte>();
        NbdServerMessageWriter.WriteErrorOffset(writer, NbdReplyStyle.Structured, NbdReplyFlags.None, 3, 0, NbdErrno.Io, "bad sector", 8192);
        var (header, payload) = ParseOne(writer, false);
        Assert.Equal(NbdReplyType.ErrorOffset, header.Type);
        Assert.False(header.IsDone);
        Assert.Equal(NbdParseStatus.Complete, NbdChunkPayloadParser.TryParseError(payload, header.Type, out var error, out var message, out var offset));
        Assert.Equal((NbdErrno.Io, "bad sector", (ulong?)8192), (error, message, offset));
    }

    [Fact]
    public void Malformed_error_payloads_are_invalid()
    {
        Assert.Equal(NbdParseStatus.Invalid, NbdChunkPayloadParser.TryParseError(new byte[5], NbdReplyType.Error, out _, out _, out _));
        // message length says 10, only 2 bytes follow
        Assert.Equal(NbdParseStatus.Invalid, NbdChunkPayloadParser.TryParseError(Convert.FromHexString("00000005000a4142"), NbdReplyType.Error, out _, out _, out _));
    }

    [Theory]
    [InlineData(NbdReplyStyle.Structured)]
    [InlineData(NbdReplyStyle.Extended)]
    public void Offset_data_chunk_carries_offset_then_data(NbdReplyStyle style)
    {
        var writer = new ArrayBufferWriter<byte>();
        NbdServerMessageWriter.WriteOffsetDataHeader(writer, style, NbdReplyFlags.Done, 1, 512, 512, 3);
        writer.Write(new byte[] { 1, 2, 3 });
        var (header, payload) = ParseOne(writer, style == NbdReplyStyle.Extended);
        Assert.Equal(NbdReplyType.OffsetData, header.Type);
        Assert.Equal(11UL, header.Length);
        Assert.Equal(NbdParseStatus.Complete, NbdChunkPayloadParser.TryParseOffsetDataPrefix(payload, out var offset));
        Assert.Equal(512UL, offset);
        Assert.Equal(new byte[] { 1, 2, 3 }, payload[8..]);
    }

    [Fact]
    public void Offset_hole_chunk_round_trips()
    {
        var writer = new ArrayBufferWriter<byte>();
        NbdServerMessageWriter.WriteOffsetHole(writer, NbdReplyStyle.Structured, NbdReplyFlags.Done, 1, 0, 65536, 4096);
        var (header, payload) = ParseOne(writer, false);
        Assert.Equal(NbdReplyType.OffsetHole, header.Type);
        Assert.Equal(NbdParseStatus.Complete, NbdChunkPayloadParser.TryParseOffsetHole(payload, out var offset, out var length));
        Assert.Equal((65536UL, 4096U), (offset, length));
        Assert.Equal(NbdParseStatus.Invalid, NbdChunkPayloadParser.TryParseOffsetHole(payload[..11], out _, out _));
    }

    [Theory]
    [InlineData(NbdReplyStyle.Structured, NbdReplyType.BlockStatus, 4 + 2 * 8)]
    [InlineData(NbdReplyStyle.Extended, NbdReplyType.BlockStatusExtended, 8 + 2 * 16)]
    public void Block_status_chunk_uses_compact_or_extended_descriptors(NbdReplyStyle style, NbdReplyType expectedType, int expectedLength)
    {
        var writer = new ArrayBufferWriter<byte>();
        NbdServerMessageWriter.WriteBlockStatusHeader(writer, style, NbdReplyFlags.Done, 1, 0, 1, 2);
        NbdServerMessageWriter.WriteBlockDescriptor(writer, style, 65536, 0);
        NbdServerMessageWriter.WriteBlockDescriptor(writer, style, 4096, 3);
        var (header, payload) = ParseOne(writer, style == NbdReplyStyle.Extended);
        Assert.Equal(expectedType, header.Type);
        Assert.Equal((ulong)expectedLength, header.Length);
        var extents = new List<NbdBlockDescriptor>();
        Assert.Equal(NbdParseStatus.Complete, NbdChunkPayloadParser.TryParseBlockStatus(payload, header.Type, extents, out var contextId));
        Assert.Equal(1U, contextId);
        Assert.Equal([new NbdBlockDescriptor(65536, 0), new NbdBlockDescriptor(4096, 3)], extents);
    }

    [Fact]
    public void Extended_descriptor_carries_lengths_beyond_4_GiB_and_compact_refuses_them()
    {
        var writer = new ArrayBufferWriter<byte>();
        NbdServerMessageWriter.WriteBlockDescriptor(writer, NbdReplyStyle.Extended, 1UL << 33, 1);
        Assert.Equal(Convert.FromHexString("0000000200000000" + "0000000000000001"), writer.WrittenSpan.ToArray());
        Assert.Throws<ArgumentOutOfRangeException>(() =>
            NbdServerMessageWriter.WriteBlockDescriptor(new ArrayBufferWriter<byte>(), NbdReplyStyle.Structured, 1UL << 32, 0));
    }

    [Fact]
    public void Block_status_payloads_with_bad_lengths_are_invalid()
    {
        var extents = new List<NbdBlockDescriptor>();
        Assert.Equal(NbdParseStatus.Invalid, NbdChunkPayloadParser.TryParseBlockStatus(new byte[4 + 7], NbdReplyType.BlockStatus, extents, out _));
        Assert.Equal(NbdParseStatus.Invalid, NbdChunkPayloadParser.TryParseBlockStatus(new byte[4], NbdReplyType.BlockStatus, extents, out _));
        // extended: count says 2, one descriptor present
        Assert.Equal(NbdParseStatus.Invalid, NbdChunkPayloadParser.TryParseBlockStatus(
            Convert.FromHexString("00000001" + "00000002" + "00000000000010000000000000000000"), NbdReplyType.BlockStatusExtended, extents, out _));
        Assert.Empty(extents);
    }

    [Fact]
    public void Reply_header_parser_needs_more_data_for_each_truncation_and_rejects_unknown_magic()
    {
        var writer = new ArrayBufferWriter<byte>();
        NbdServerMessageWriter.WriteChunkHeader(writer, NbdReplyStyle.Structured, 0, NbdReplyType.None, 1, 0, 0);
        var bytes = writer.WrittenSpan.ToArray();
        for (var length = 0; length < bytes.Length; length++)
        {
            Assert.Equal(NbdParseStatus.NeedMoreData,
                NbdClientMessageParser.TryParseReplyHeader(new ReadOnlySequence<byte>(bytes, 0, length), false, out _, out _));
        }
        Assert.Equal(NbdParseStatus.BadMagic, NbdClientMessageParser.TryParseReplyHeader(new ReadOnlySequence<byte>(new byte[32]), false, out _, out _));
        // with extended headers negotiated, a structured (20-byte) header is out of protocol
        Assert.Equal(NbdParseStatus.BadMagic, NbdClientMessageParser.TryParseReplyHeader(new ReadOnlySequence<byte>(bytes), true, out _, out _));
    }

    [Theory]
    [InlineData(true, 10)]
    [InlineData(false, 134)]
    public void Export_name_reply_has_124_zero_bytes_unless_no_zeroes(bool noZeroes, int expectedLength)
    {
        var writer = new ArrayBufferWriter<byte>();
        NbdServerMessageWriter.WriteExportNameReply(writer, 1UL << 30, NbdTransmissionFlags.HasFlags | NbdTransmissionFlags.SendFlush, noZeroes);
        Assert.Equal(expectedLength, writer.WrittenCount);
        Assert.All(writer.WrittenSpan[10..].ToArray(), b => Assert.Equal(0, b));

        var sequence = Segments.Split(writer.WrittenSpan.ToArray(), 4);
        Assert.Equal(NbdParseStatus.Complete, NbdClientMessageParser.TryParseExportNameReply(sequence, noZeroes, out var size, out var flags, out var consumed));
        Assert.Equal(1UL << 30, size);
        Assert.Equal(NbdTransmissionFlags.HasFlags | NbdTransmissionFlags.SendFlush, flags);
        Assert.Equal(sequence.End, consumed);
        Assert.Equal(NbdParseStatus.NeedMoreData, NbdClientMessageParser.TryParseExportNameReply(sequence.Slice(0, expectedLength - 1), noZeroes, out _, out _, out _));
    }
}
