using System.Buffers;
using BenchmarkDotNet.Attributes;
using NbdQcow.Protocol;

namespace NbdQcow.Perf.Micro;

/// <summary>Decoding a transmission request header, as the server's receive loop does once per request.</summary>
[MemoryDiagnoser]
public class NbdRequestParseBenchmarks
{
    private ReadOnlySequence<byte> _compact;
    private ReadOnlySequence<byte> _compactSplit;
    private ReadOnlySequence<byte> _extended;
    private readonly ArrayBufferWriter<byte> _writer = new(64);
    private readonly NbdRequest _read = new(NbdCommandFlags.None, NbdCommand.Read, 0x1234_5678_9abc_def0, 1L << 30, 4096);

    [GlobalSetup]
    public void Setup()
    {
        _compact = new ReadOnlySequence<byte>(Encode(extended: false));
        var bytes = Encode(extended: false);
        _compactSplit = BufferSegment.Split(bytes, 13);
        _extended = new ReadOnlySequence<byte>(Encode(extended: true));
    }

    private byte[] Encode(bool extended)
    {
        var writer = new ArrayBufferWriter<byte>();
        NbdClientMessageWriter.WriteRequest(writer, extended, _read);
        return writer.WrittenSpan.ToArray();
    }

    [Benchmark(Baseline = true, Description = "parse compact request (one segment)")]
    public ulong ParseCompact()
    {
        NbdServerMessageParser.TryParseRequest(_compact, extendedHeaders: false, out var request, out _);
        return request.Offset;
    }

    [Benchmark(Description = "parse compact request split across two segments")]
    public ulong ParseCompactSplit()
    {
        NbdServerMessageParser.TryParseRequest(_compactSplit, extendedHeaders: false, out var request, out _);
        return request.Offset;
    }

    [Benchmark(Description = "parse extended request")]
    public ulong ParseExtended()
    {
        NbdServerMessageParser.TryParseRequest(_extended, extendedHeaders: true, out var request, out _);
        return request.Offset;
    }

    [Benchmark(Description = "serialise compact request (client)")]
    public int WriteRequest()
    {
        _writer.ResetWrittenCount();
        NbdClientMessageWriter.WriteRequest(_writer, extendedHeaders: false, _read);
        return _writer.WrittenCount;
    }
}
