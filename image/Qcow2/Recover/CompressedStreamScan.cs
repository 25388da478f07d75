using System.IO.Compression;
using NbdQcow.Image.Qcow2.Format;

namespace NbdQcow.Image.Qcow2.Recover;

/// <summary>
/// Finds compressed streams no table maps inside host clusters that live compressed streams share. Several
/// compressed clusters are packed into one host cluster, byte after byte, so a lost L2 entry leaves its stream in a
/// cluster that still counts as referenced and that the orphan scan never reads. A host cluster is searched when its
/// refcount (consistent refcounts only) exceeds the streams known to touch it, or, without trustworthy refcounts,
/// whenever known streams touch it (bounded by a budget of decode attempts). Candidate starts are the bytes not
/// certainly inside a known stream (a descriptor only says in which 512-byte sector a stream ends); a candidate is a
/// stream when it decodes to exactly one cluster and ends there.
/// </summary>
internal sealed class CompressedStreamScan
{
    /// <summary>Decode attempts in total at most: a file of garbage cannot make the scan run for hours.</summary>
    public const long MaxAttempts = 1L << 21;

    /// <summary>A stream some table maps: where it starts, its descriptor's length, and the guest cluster it maps (-1 when unknown).</summary>
    public readonly record struct KnownStream(long Start, int Length, long GuestCluster);

    /// <summary>A stream found: where it starts, how many bytes it takes, and guest clusters it may belong to (allocation order only).</summary>
    public sealed record FoundStream(long Start, int Length, List<long> HintGuestClusters, string Note);

    public List<FoundStream> Found { get; } = new();

    public static CompressedStreamScan Run(DamagedImage image, List<KnownStream> known, long guestClusters)
    {
        var scan = new CompressedStreamScan();
        if (known.Count == 0) return scan;
        var g = image.Geometry;
        known.Sort((a, b) => a.Start.CompareTo(b.Start));
        var refcounts = new RefcountLookup(image);
        var output = new byte[g.ClusterSize];
        long attempts = 0;
        int first = 0; // index of the first known stream that may still touch the cluster being searched
        long cluster = -1;
        for (int i = 0; i < known.Count; i++)
        {
            long c = image.ClusterOf(known[i].Start);
            if (c <= cluster) continue;
            cluster = c;
            while (first < known.Count && known[first].Start + known[first].Length <= cluster << g.ClusterBits) first++;
            int touching = 0;
            for (int k = first; k < known.Count && image.ClusterOf(known[k].Start) <= cluster; k++)
                if (k == first || known[k].Start != known[k - 1].Start) touching++;
            ulong? refcount = image.RefcountsConsistent ? refcounts.Get(cluster) : null;
            if (refcount is { } r && r <= (ulong)touching) continue; // every reference accounted for
            if (attempts >= MaxAttempts)
            {
                image.Report.Damage("compressed", $"the search for lost compressed streams stopped at host cluster 0x{cluster << g.ClusterBits:x} after {MaxAttempts} decode attempts");
                break;
            }
            attempts += SearchCluster(image, scan, known, first, cluster, output, guestClusters, refcount, touching);
        }
        image.Report.CompressedStreamsFound = scan.Found.Count;
        return scan;
    }

    private static long SearchCluster(DamagedImage image, CompressedStreamScan scan, List<KnownStream> known, int first, long cluster,
        byte[] output, long guestClusters, ulong? refcount, int touching)
    {
        var g = image.Geometry;
        long start = cluster << g.ClusterBits;
        int maxStream = g.ClusterSize * 2;
        var window = new byte[Math.Max(0, Math.Min(g.ClusterSize + maxStream, image.FileLength - start))];
        if (window.Length == 0) return 0;
        image.File.Read(start, window);
        // Bytes certainly inside a known stream: from its start to the start of the sector its descriptor ends in.
        var certain = new bool[g.ClusterSize];
        for (int k = first; k < known.Count && image.ClusterOf(known[k].Start) <= cluster; k++)
        {
            long from = Math.Max(known[k].Start, start), to = Math.Min(Math.Max(known[k].Start + 1, known[k].Start + known[k].Length - CompressedClusterDescriptor.SectorSize), start + g.ClusterSize);
            for (long b = from; b < to; b++) certain[b - start] = true;
            if (known[k].Start >= start) certain[known[k].Start - start] = true;
        }
        long attempts = 0;
        for (int p = 0; p < g.ClusterSize && p < window.Length; p++)
        {
            if (certain[p] || !MayStartStream(image.Header.CompressionType, window.AsSpan(p))) continue;
            attempts++;
            int available = Math.Min(window.Length - p, maxStream);
            if (!DecodesExactly(image.Header.CompressionType, window, p, available, output)) continue;
            int length = ShortestDecodingLength(image.Header.CompressionType, window, p, available, output);
            attempts += 20;
            long at = start + p;
            var hints = Hints(known, at, guestClusters);
            scan.Found.Add(new FoundStream(at, length, hints,
                $"compressed stream of {length} bytes at 0x{at:x} that no table maps, found inside host cluster 0x{start:x} " +
                $"(refcount {(refcount?.ToString() ?? "unknown")}, {touching} known streams); guest offset unknown" +
                (hints.Count > 0 ? ", the candidates are the unmapped neighbours of the streams before and after it (allocation order, a hint only)" : "")));
            p += length - 1;
        }
        return attempts;
    }

    /// <summary>The guest clusters right after the known stream before it and right before the one after it.</summary>
    private static List<long> Hints(List<KnownStream> known, long at, long guestClusters)
    {
        var hints = new List<long>();
        int next = known.FindIndex(k => k.Start > at);
        var before = next < 0 ? known[^1] : next > 0 ? known[next - 1] : (KnownStream?)null;
        var after = next >= 0 ? known[next] : (KnownStream?)null;
        if (before is { GuestCluster: >= 0 } b && b.GuestCluster + 1 < guestClusters) hints.Add(b.GuestCluster + 1);
        if (after is { GuestCluster: > 0 } a && !hints.Contains(a.GuestCluster - 1)) hints.Add(a.GuestCluster - 1);
        hints.Sort();
        return hints;
    }

    /// <summary>Cheap header test before a decode: a zstd frame magic, or a deflate block header that is not invalid on its face.</summary>
    private static bool MayStartStream(Qcow2CompressionType type, ReadOnlySpan<byte> at)
    {
        if (at.Length < 5) return false;
        if (type == Qcow2CompressionType.Zstd)
            return at[0] == 0x28 && at[1] == 0xb5 && at[2] == 0x2f && at[3] == 0xfd;
        int blockType = (at[0] >> 1) & 3;
        return blockType switch
        {
            0 => (at[1] | at[2] << 8) == (~(at[3] | at[4] << 8) & 0xffff),
            1 => true,
            2 => (at[0] >> 3) <= 29 && (at[1] & 0x1f) <= 29 && CodeLengthCodeIsComplete(at),
            _ => false,
        };
    }

    /// <summary>A dynamic block's code-length code must be a complete prefix code (zlib refuses any other).</summary>
    private static bool CodeLengthCodeIsComplete(ReadOnlySpan<byte> at)
    {
        // Bits: 3 header, 5 HLIT, 5 HDIST, 4 HCLEN, then HCLEN + 4 lengths of 3 bits, least significant bit first.
        int hclen = (int)(Bits(at, 13, 4) + 4);
        if (at.Length * 8 < 17 + hclen * 3) return false;
        int kraft = 0;
        for (int i = 0; i < hclen; i++)
        {
            int length = (int)Bits(at, 17 + i * 3, 3);
            if (length > 0) kraft += 1 << (7 - length);
        }
        return kraft == 1 << 7 || kraft == 1 << 6; // complete, or a single code of length 1 (zlib allows one)
    }

    private static uint Bits(ReadOnlySpan<byte> data, int bit, int count)
    {
        uint value = 0;
        for (int i = 0; i < count; i++)
            value |= (uint)((data[(bit + i) >> 3] >> ((bit + i) & 7)) & 1) << i;
        return value;
    }

    /// <summary>Decodes to exactly one cluster and the stream ends there (deflate), as qemu compresses one cluster per stream.</summary>
    private static bool DecodesExactly(Qcow2CompressionType type, byte[] window, int offset, int length, byte[] output)
    {
        if (type == Qcow2CompressionType.Zstd)
            return ClusterDecompressor.TryDecompress(type, window.AsSpan(offset, length).ToArray(), length, output);
        try
        {
            using var input = new MemoryStream(window, offset, length, writable: false);
            using var inflater = new DeflateStream(input, CompressionMode.Decompress);
            int filled = 0;
            while (filled < output.Length)
            {
                int n = inflater.Read(output, filled, output.Length - filled);
                if (n == 0) return false;
                filled += n;
            }
            return inflater.Read(new byte[1], 0, 1) == 0;
        }
        catch (InvalidDataException)
        {
            return false;
        }
    }

    /// <summary>The fewest bytes from which the stream still decodes: its real length (the input is cut until it no longer does).</summary>
    private static int ShortestDecodingLength(Qcow2CompressionType type, byte[] window, int offset, int available, byte[] output)
    {
        int low = 1, high = available; // decodes with high bytes
        while (low < high)
        {
            int mid = low + (high - low) / 2;
            if (DecodesExactly(type, window, offset, mid, output)) high = mid;
            else low = mid + 1;
        }
        DecodesExactly(type, window, offset, high, output); // leave the cluster decoded
        return high;
    }
}
