using System.Buffers.Binary;
using NbdQcow.HostIo;
using NbdQcow.Image.Qcow2.Format;

namespace NbdQcow.Image.Qcow2.Recover;

/// <summary>
/// Reads the header of a damaged image, taking the operator's overrides (cluster size, L1 and refcount table
/// offsets) over the header's fields. When cluster_bits is garbage and no size is given, the cluster size is probed:
/// under the true size L2 tables are whole clusters whose entries all point at clusters aligned to it, so the
/// largest size at which the file shows such clusters (and which the header's table offsets are aligned to) wins.
/// </summary>
internal static class DamagedHeaderReader
{
    private const int ProbeSampleClusters = 4096;

    public static Qcow2Header Read(string path, IHostFile file, RecoveryOptions options, RecoveryReport report)
    {
        int firstLength = (int)Math.Min(file.Length, 1 << Qcow2Header.MaxClusterBits);
        var first = new byte[1 << Qcow2Header.MaxClusterBits];
        file.Read(0, first.AsSpan(0, firstLength));
        Qcow2Header header;
        if (options.ClusterSize is { } size)
        {
            int bits = System.Numerics.BitOperations.Log2((uint)size);
            uint found = BinaryPrimitives.ReadUInt32BigEndian(first.AsSpan(20));
            if (found != bits)
                report.Damage("header", $"cluster_bits = {found} in the header; --cluster-size {size} (cluster_bits {bits}) used instead");
            header = ParseWith(path, first, bits);
        }
        else
        {
            try
            {
                header = Qcow2Header.Parse(first);
            }
            catch (Qcow2FormatException e) when (e.Field == "cluster_bits")
            {
                header = Probe(path, file, first, report, e.Message);
            }
        }
        if (options.L1Offset is { } l1)
        {
            report.Damage("header", $"l1_table_offset = 0x{header.L1TableOffset:x} in the header; --l1-offset 0x{l1:x} used instead");
            header.L1TableOffset = (ulong)l1;
        }
        if (options.RefcountOffset is { } rt)
        {
            report.Damage("header", $"refcount_table_offset = 0x{header.RefcountTableOffset:x} in the header; --refcount-offset 0x{rt:x} used instead");
            header.RefcountTableOffset = (ulong)rt;
            if (header.RefcountTableClusters == 0) header.RefcountTableClusters = 1;
        }
        return header;
    }

    private static Qcow2Header ParseWith(string path, byte[] first, int bits)
    {
        var patched = (byte[])first.Clone();
        BinaryPrimitives.WriteUInt32BigEndian(patched.AsSpan(20), (uint)bits);
        try
        {
            return Qcow2Header.Parse(patched);
        }
        catch (Qcow2FormatException e)
        {
            throw new RecoveryInputException($"{path}: even with {1 << bits}-byte clusters the qcow2 header is unusable: {e.Message}", e);
        }
    }

    private static Qcow2Header Probe(string path, IHostFile file, byte[] first, RecoveryReport report, string why)
    {
        var votes = new List<string>();
        Qcow2Header? best = null;
        for (int bits = Qcow2Header.MinClusterBits; bits <= Qcow2Header.MaxClusterBits; bits++)
        {
            Qcow2Header candidate;
            try
            {
                var patched = (byte[])first.Clone();
                BinaryPrimitives.WriteUInt32BigEndian(patched.AsSpan(20), (uint)bits);
                candidate = Qcow2Header.Parse(patched);
            }
            catch (Qcow2FormatException)
            {
                continue;
            }
            long mask = (1L << bits) - 1;
            // The header's table offsets, when they are still plausible, must be cluster aligned.
            if ((candidate.L1TableOffset & (ulong)mask) != 0 && candidate.L1TableOffset < (ulong)file.Length) continue;
            if ((candidate.RefcountTableOffset & (ulong)mask) != 0 && candidate.RefcountTableOffset < (ulong)file.Length) continue;
            int tables = CountL2Shaped(file, candidate);
            votes.Add($"{1 << bits}: {tables}");
            if (tables > 0) best = candidate; // larger sizes come later: the largest size that still shows tables wins
        }
        if (best is null)
            throw new RecoveryInputException($"{path}: the qcow2 header is unusable ({why}) and no cluster size shows L2 tables in the file " +
                $"(L2-shaped clusters per size: {string.Join(", ", votes)}); give --cluster-size if you know it");
        report.Damage("header", $"{why}; cluster size probed as {best.ClusterSize} (L2-shaped clusters per size: {string.Join(", ", votes)}); --cluster-size overrides");
        return best;
    }

    /// <summary>Clusters (of the first few thousand with data) that look like L2 tables under the candidate's geometry.</summary>
    private static int CountL2Shaped(IHostFile file, Qcow2Header candidate)
    {
        var probeReport = new RecoveryReport { ImagePath = "", OutputPath = "", OutputFormat = RecoveryOutputFormat.Raw };
        var image = new DamagedImage(file, candidate, new RecoveryTableOverlay([], probeReport), probeReport);
        image.MarkMetadata(0, candidate.ClusterSize);
        var cluster = new byte[candidate.ClusterSize];
        int count = 0;
        long limit = Math.Min(image.FileClusters, ProbeSampleClusters);
        for (long c = 1; c < limit; c++)
        {
            file.Read(c << candidate.ClusterBits, cluster);
            if (HostClusterClassifier.Classify(image, cluster) == HostClusterKind.L2Table) count++;
        }
        return count;
    }
}
