using System.Buffers;

namespace NbdQcow.Protocol;

/// <summary>Small helpers for fixed-size headers that may straddle pipe segments.</summary>
internal static class SequenceBytes
{
    /// <summary>
    /// Returns the first <paramref name="count"/> bytes as one span: directly from the first segment when it is
    /// long enough (the usual case), else copied into <paramref name="scratch"/>. False when fewer bytes are buffered.
    /// </summary>
    public static bool TryGetPrefix(in ReadOnlySequence<byte> buffer, int count, Span<byte> scratch, out ReadOnlySpan<byte> prefix)
    {
        if (buffer.Length < count)
        {
            prefix = default;
            return false;
        }
        var first = buffer.FirstSpan;
        if (first.Length >= count)
        {
            prefix = first[..count];
            return true;
        }
        var target = scratch[..count];
        buffer.Slice(0, count).CopyTo(target);
        prefix = target;
        return true;
    }
}
