using System.Buffers;
using System.IO.Compression;
using NbdQcow.Image.Qcow2.Format;
using ZstdSharp;

namespace NbdQcow.Image.Qcow2;

/// <summary>
/// Decompresses one qcow2 cluster. Input may carry trailing bytes (the descriptor rounds to 512-byte sectors) and,
/// for zstd, several frames; decoding stops once the cluster is full, as qemu's qcow2-threads.c does.
/// </summary>
internal static class ClusterDecompressor
{
    [ThreadStatic] private static Decompressor? _zstd;

    /// <summary>Fills <paramref name="cluster"/> from <paramref name="compressed"/>; false when the data is corrupt or short.</summary>
    public static bool TryDecompress(Qcow2CompressionType type, byte[] compressed, int compressedLength, Span<byte> cluster) =>
        type == Qcow2CompressionType.Zstd
            ? TryZstd(compressed.AsSpan(0, compressedLength), cluster)
            : TryDeflate(compressed, compressedLength, cluster);

    private static bool TryDeflate(byte[] compressed, int compressedLength, Span<byte> cluster)
    {
        try
        {
            using var input = new MemoryStream(compressed, 0, compressedLength, writable: false);
            using var inflater = new DeflateStream(input, CompressionMode.Decompress);
            int filled = 0;
            while (filled < cluster.Length)
            {
                int n = inflater.Read(cluster[filled..]);
                if (n == 0)
                    return false;
                filled += n;
            }
            return true;
        }
        catch (InvalidDataException)
        {
            return false;
        }
    }

    private static bool TryZstd(ReadOnlySpan<byte> compressed, Span<byte> cluster)
    {
        var zstd = _zstd ??= new Decompressor();
        zstd.ResetStream();
        int inPos = 0;
        int outPos = 0;
        try
        {
            while (outPos < cluster.Length)
            {
                zstd.UnwrapStream(compressed[inPos..], cluster[outPos..], out int consumed, out int written);
                if (consumed == 0 && written == 0)
                    return false; // no progress: truncated or corrupt input
                inPos += consumed;
                outPos += written;
            }
            return true;
        }
        catch (ZstdException)
        {
            zstd.ResetStream();
            return false;
        }
    }

    public static byte[] RentCompressedBuffer(int length) => ArrayPool<byte>.Shared.Rent(length);

    public static void Return(byte[] buffer) => ArrayPool<byte>.Shared.Return(buffer);
}
