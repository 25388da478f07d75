using NbdQcow.Tests.Crash.Recording;

namespace NbdQcow.Tests.Crash.States;

/// <summary>The bytes of one host file in a crash state, built in memory by replaying logged calls.</summary>
public sealed class FileContent
{
    private byte[] _bytes;

    public FileContent(byte[]? initial)
    {
        Exists = initial is not null;
        _bytes = initial is null ? [] : (byte[])initial.Clone();
        Length = _bytes.Length;
    }

    private FileContent(byte[] bytes, long length, bool exists)
    {
        _bytes = bytes;
        Length = length;
        Exists = exists;
    }

    public bool Exists { get; private set; }

    public long Length { get; private set; }

    public ReadOnlySpan<byte> Bytes => _bytes.AsSpan(0, (int)Length);

    public FileContent Clone() => new((byte[])_bytes.Clone(), Length, Exists);

    /// <summary>Applies one call; for a torn write only the 4 KiB blocks marked in <paramref name="keptBlocks"/>.</summary>
    public void Apply(HostFileEvent e, bool[]? keptBlocks = null)
    {
        switch (e.Kind)
        {
            case HostFileEventKind.Write:
                Exists = true;
                var data = e.Data!;
                var end = e.Offset + data.Length;
                var anyKept = false;
                // Grow once up front: growing block by block copied only the old length and dropped the blocks
                // already copied past it (a write extending the file by more than its size lost its start).
                EnsureCapacity(end);
                for (var block = 0; block < CrashStateGenerator.BlockCount(e); block++)
                {
                    if (keptBlocks is not null && !keptBlocks[block]) continue;
                    anyKept = true;
                    var blockStart = Math.Max(e.Offset, (e.Offset / CrashStateGenerator.TearSize + block) * CrashStateGenerator.TearSize);
                    var blockEnd = Math.Min(end, (e.Offset / CrashStateGenerator.TearSize + block + 1) * CrashStateGenerator.TearSize);
                    EnsureCapacity(blockEnd);
                    data.AsSpan((int)(blockStart - e.Offset), (int)(blockEnd - blockStart)).CopyTo(_bytes.AsSpan((int)blockStart));
                }
                if (anyKept && end > Length) Length = end;
                break;
            case HostFileEventKind.SetLength:
                Exists = true;
                EnsureCapacity(e.Length);
                if (e.Length < Length) _bytes.AsSpan((int)e.Length, (int)(Length - e.Length)).Clear();
                Length = e.Length;
                break;
            case HostFileEventKind.PunchHole:
            case HostFileEventKind.ZeroRange:
                var stop = Math.Min(Length, e.Offset + e.Length);
                if (stop > e.Offset) _bytes.AsSpan((int)e.Offset, (int)(stop - e.Offset)).Clear();
                break;
            case HostFileEventKind.AllocateZeroed:
                Exists = true;
                EnsureCapacity(e.Offset + e.Length);
                var zeroEnd = Math.Min(Length, e.Offset + e.Length);
                if (zeroEnd > e.Offset) _bytes.AsSpan((int)e.Offset, (int)(zeroEnd - e.Offset)).Clear();
                if (e.Offset + e.Length > Length)
                {
                    // Bytes between the old end and the range (never written) read as zero.
                    _bytes.AsSpan((int)Length, (int)(e.Offset + e.Length - Length)).Clear();
                    Length = e.Offset + e.Length;
                }
                break;
        }
    }

    private void EnsureCapacity(long length)
    {
        if (length <= _bytes.Length) return;
        var grown = new byte[Math.Max(length, _bytes.Length * 2L)];
        _bytes.AsSpan(0, (int)Length).CopyTo(grown);
        _bytes = grown;
    }
}
