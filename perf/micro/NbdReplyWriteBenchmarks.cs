using System.Buffers;
using BenchmarkDotNet.Attributes;
using NbdQcow.Protocol;

namespace NbdQcow.Perf.Micro;

/// <summary>Serialising replies into a reused buffer writer, as the server's reply writer does once per request.</summary>
[MemoryDiagnoser]
public class NbdReplyWriteBenchmarks
{
    private readonly ArrayBufferWriter<byte> _writer = new(64 * 1024);
    private readonly byte[] _payload = new byte[4096];

    [Benchmark(Baseline = true, Description = "simple reply header (write/flush ack)")]
    public int SimpleReply()
    {
        _writer.ResetWrittenCount();
        NbdServerMessageWriter.WriteSimpleReply(_writer, NbdErrno.None, 42);
        return _writer.WrittenCount;
    }

    [Benchmark(Description = "simple read reply: header + 4 KiB payload")]
    public int SimpleReadReply()
    {
        _writer.ResetWrittenCount();
        NbdServerMessageWriter.WriteSimpleReply(_writer, NbdErrno.None, 42);
        _payload.CopyTo(_writer.GetSpan(_payload.Length));
        _writer.Advance(_payload.Length);
        return _writer.WrittenCount;
    }

    [Benchmark(Description = "structured read reply: OFFSET_DATA chunk + 4 KiB payload")]
    public int StructuredReadReply()
    {
        _writer.ResetWrittenCount();
        NbdServerMessageWriter.WriteOffsetDataHeader(_writer, NbdReplyStyle.Structured, NbdReplyFlags.Done, 42, 1L << 30, 1L << 30, _payload.Length);
        _payload.CopyTo(_writer.GetSpan(_payload.Length));
        _writer.Advance(_payload.Length);
        return _writer.WrittenCount;
    }

    [Benchmark(Description = "extended success chunk")]
    public int ExtendedSuccess()
    {
        _writer.ResetWrittenCount();
        NbdServerMessageWriter.WriteSuccess(_writer, NbdReplyStyle.Extended, 42, 1L << 30);
        return _writer.WrittenCount;
    }
}
