using System.Buffers;

namespace NbdQcow.Fuzz;

/// <summary>
/// Builds a multi-segment ReadOnlySequence from one array, cut every <c>segmentLength</c> bytes, so the parsers'
/// paths for a message split across pipe buffers run too.
/// </summary>
public sealed class SegmentedSequence : ReadOnlySequenceSegment<byte>
{
    private SegmentedSequence(ReadOnlyMemory<byte> memory, long runningIndex)
    {
        Memory = memory;
        RunningIndex = runningIndex;
    }

    public static ReadOnlySequence<byte> Create(ReadOnlyMemory<byte> data, int segmentLength)
    {
        if (segmentLength <= 0 || data.Length <= segmentLength) return new ReadOnlySequence<byte>(data);
        var first = new SegmentedSequence(data[..segmentLength], 0);
        var last = first;
        for (int at = segmentLength; at < data.Length; at += segmentLength)
        {
            var next = new SegmentedSequence(data.Slice(at, Math.Min(segmentLength, data.Length - at)), at);
            last.Next = next;
            last = next;
        }
        return new ReadOnlySequence<byte>(first, 0, last, last.Memory.Length);
    }
}
