using System.Runtime.InteropServices;

namespace NbdQcow.Tests.Crash.Oracle;

/// <summary>
/// Unique per-write data: each 512-byte sector carries a magic, the writing operation's id, the sector it was
/// written for, and a body derived from both — so any sector read back tells who wrote it and for where.
/// </summary>
public static class SectorPattern
{
    public const int SectorSize = 512;
    private const uint Magic = 0x4852_5343; // "CSRH"

    public static void Fill(Span<byte> sector, int opId, long sectorIndex)
    {
        var words = MemoryMarshal.Cast<byte, ulong>(sector[..SectorSize]);
        words[0] = ((ulong)Magic << 32) | (uint)opId;
        words[1] = (ulong)sectorIndex;
        var state = Mix(((ulong)(uint)opId << 40) ^ (ulong)sectorIndex);
        for (var i = 2; i < words.Length; i++) words[i] = state = Mix(state + (ulong)i);
    }

    public static void Fill(Span<byte> data, int opId, long firstSector, int sectors)
    {
        for (var i = 0; i < sectors; i++) Fill(data.Slice(i * SectorSize, SectorSize), opId, firstSector + i);
    }

    public static SectorValue Decode(ReadOnlySpan<byte> sector)
    {
        var words = MemoryMarshal.Cast<byte, ulong>(sector[..SectorSize]);
        if (words.IndexOfAnyExcept(0UL) < 0) return SectorValue.Zero;
        if ((uint)(words[0] >> 32) != Magic) return new SectorValue(SectorValueKind.Garbage);
        var opId = (int)(uint)words[0];
        var writtenFor = (long)words[1];
        var state = Mix(((ulong)(uint)opId << 40) ^ (ulong)writtenFor);
        for (var i = 2; i < words.Length; i++)
            if (words[i] != (state = Mix(state + (ulong)i))) return new SectorValue(SectorValueKind.Garbage);
        return new SectorValue(SectorValueKind.Written, opId, writtenFor);
    }

    private static ulong Mix(ulong x)
    {
        // splitmix64 finaliser: cheap and well spread.
        x ^= x >> 30; x *= 0xbf58476d1ce4e5b9UL;
        x ^= x >> 27; x *= 0x94d049bb133111ebUL;
        return x ^ (x >> 31);
    }

}
