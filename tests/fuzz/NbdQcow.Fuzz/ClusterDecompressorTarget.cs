using NbdQcow.Image.Qcow2;
using NbdQcow.Image.Qcow2.Format;

namespace NbdQcow.Fuzz;

/// <summary>
/// Decompression of one compressed cluster (deflate or zstd): the first byte picks the method and the cluster
/// size (512 B to 64 KiB), the rest is the compressed stream. Corrupt data must come back as false.
/// </summary>
public sealed class ClusterDecompressorTarget : IFuzzTarget
{
    public string Name => "decompress";

    public string Description => "ClusterDecompressor (deflate and zstd) into one cluster";

    public void Run(byte[] input)
    {
        if (input.Length < 1) return;
        var type = (input[0] & 1) != 0 ? Qcow2CompressionType.Zstd : Qcow2CompressionType.Zlib;
        int clusterBits = 9 + ((input[0] >> 1) & 7);
        int length = input.Length - 1;
        var compressed = ClusterDecompressor.RentCompressedBuffer(Math.Max(1, length));
        try
        {
            input.AsSpan(1).CopyTo(compressed);
            var cluster = new byte[1 << clusterBits];
            ClusterDecompressor.TryDecompress(type, compressed, length, cluster);
        }
        finally
        {
            ClusterDecompressor.Return(compressed);
        }
    }
}
