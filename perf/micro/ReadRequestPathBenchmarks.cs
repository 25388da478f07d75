using System.Buffers;
using BenchmarkDotNet.Attributes;
using NbdQcow.Image;
using NbdQcow.Protocol;

namespace NbdQcow.Perf.Micro;

/// <summary>
/// One READ request end to end without sockets: parse the header, look up and read 4 KiB from a qcow2 image,
/// write the simple reply and payload. The target is 0 B allocated per operation here.
/// </summary>
[MemoryDiagnoser]
public class ReadRequestPathBenchmarks
{
    private Qcow2TestImage _image = null!;
    private IBlockDevice _device = null!;
    private ReadOnlySequence<byte>[] _requests = null!;
    private readonly ArrayBufferWriter<byte> _replies = new(64 * 1024);
    private int _next;

    [GlobalSetup]
    public void Setup()
    {
        _image = new Qcow2TestImage();
        _device = ImageOpener.Open(_image.Path, new ImageOpenOptions { MaxDirtyAge = null });
        _requests = new ReadOnlySequence<byte>[_image.Offsets.Length];
        for (var i = 0; i < _requests.Length; i++)
        {
            var writer = new ArrayBufferWriter<byte>();
            NbdClientMessageWriter.WriteRequest(writer, extendedHeaders: false,
                new NbdRequest(NbdCommandFlags.None, NbdCommand.Read, (ulong)i, (ulong)_image.Offsets[i], 4096));
            _requests[i] = new ReadOnlySequence<byte>(writer.WrittenMemory);
        }
    }

    [GlobalCleanup]
    public async Task Cleanup()
    {
        await _device.DisposeAsync();
        _image.Dispose();
    }

    [Benchmark(Description = "READ 4 KiB: parse + qcow2 lookup + pread + simple reply")]
    public async ValueTask<int> ReadRequest()
    {
        var sequence = _requests[_next];
        _next = (_next + 1) % _requests.Length;
        NbdServerMessageParser.TryParseRequest(sequence, extendedHeaders: false, out var request, out _);
        _replies.ResetWrittenCount();
        NbdServerMessageWriter.WriteSimpleReply(_replies, NbdErrno.None, request.Cookie);
        var payload = _replies.GetMemory((int)request.Length)[..(int)request.Length];
        await _device.ReadAsync((long)request.Offset, payload).ConfigureAwait(false);
        _replies.Advance((int)request.Length);
        return _replies.WrittenCount;
    }
}
