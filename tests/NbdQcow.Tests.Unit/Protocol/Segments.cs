using System.Buffers;

namespace NbdQcow.Tests.Unit.Protocol;

/// <summary>Builds ReadOnlySequences split into several segments, as a pipe delivers them.</summary>
internal static class Segments
{
    public static ReadOnlySequence<byte> Split(byte[] data, int segmentLength)
    {
        if (data.Length == 0)
        {
            return ReadOnlySequence<byte>.Empty;
        }
        Segment? first = null;
        Segment? last = null;
        for (var at = 0; at < data.Length; at += segmentLength)
        {
            var chunk = data.AsMemory(at, Math.Min(segmentLength, data.Length - at));
            var segment = new Segment(chunk, last?.RunningIndex + last?.Memory.Length ?? 0);
            if (last is null)
            {
                first = segment;
            }
            else
            {
                last.SetNext(segment);
            }
            last = segment;
        }
        return new ReadOnlySequence<byte>(first!, 0, last!, last!.Memory.Length);
    }

    private sealed class Segment : ReadOnlySequenceSegment<byte>
    {
        public Segment(ReadOnlyMemory<byte> memory, long runningIndex)
        {
            Memory = memory;
            RunningIndex = runningIndex;
        }

        public void SetNext(Segment next) => Next = next;
    }
}
