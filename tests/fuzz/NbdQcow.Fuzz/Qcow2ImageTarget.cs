using NbdQcow.HostIo;
using NbdQcow.Image;
using NbdQcow.Image.Qcow2;

namespace NbdQcow.Fuzz;

/// <summary>
/// The input as a whole qcow2 file, opened through the real Qcow2Image open path (header, validation, journal
/// bit, snapshot table, L1, bitmap directory, backing and data file names): read and block-status a few ranges
/// read-only (L2 entries of every kind, compressed clusters and their decompression, subclusters), then open it
/// read-write in memory and write, zero, trim and flush.
/// </summary>
public sealed class Qcow2ImageTarget : IFuzzTarget
{
    /// <summary>Bytes read per range: enough to cross a few clusters, small enough to keep iterations fast.</summary>
    private const int ReadLength = 256 * 1024;

    public string Name => "qcow2-image";

    public string Description => "Qcow2Image.Open from memory, then reads, block status, writes, zero, trim, flush";

    public void Run(byte[] input) => RunAsync(input).GetAwaiter().GetResult();

    private static async Task RunAsync(byte[] input)
    {
        try
        {
            await ReadOnlyPassAsync(input, snapshot: null).ConfigureAwait(false);
        }
        catch (Exception e) when (ExpectedFailures.IsBadInputOutcome(e))
        {
            return;
        }
        try
        {
            await ReadWritePassAsync(input).ConfigureAwait(false);
        }
        catch (Exception e) when (ExpectedFailures.IsBadInputOutcome(e))
        {
        }
    }

    private static async Task ReadOnlyPassAsync(byte[] input, string? snapshot)
    {
        var files = new MemoryFileSystem();
        files.Add("/fuzz/image.qcow2", input);
        var options = new ImageOpenOptions { ReadOnly = true, MaxDirtyAge = null, Snapshot = snapshot, HostFileFactory = files.Open };
        await using var image = Qcow2Image.Open("/fuzz/image.qcow2", options, files.Open);
        await ReadAroundAsync(image).ConfigureAwait(false);
        if (snapshot is null && image.Snapshots.Count > 0)
            await ReadOnlyPassAsync(input, image.Snapshots[0].Name).ConfigureAwait(false);
    }

    private static async Task ReadWritePassAsync(byte[] input)
    {
        var files = new MemoryFileSystem();
        files.Add("/fuzz/image.qcow2", (byte[])input.Clone());
        var options = new ImageOpenOptions { MaxDirtyAge = null, HostFileFactory = files.Open };
        await using var image = Qcow2Image.Open("/fuzz/image.qcow2", options, files.Open);
        if (image.IsReadOnly || image.Size == 0) return;
        var data = new byte[8192];
        data.AsSpan().Fill(0xa5);
        foreach (long offset in Offsets(image.Size))
        {
            int length = (int)Math.Min(data.Length, image.Size - offset);
            await image.WriteAsync(offset, data.AsMemory(0, length), fua: false).ConfigureAwait(false);
        }
        long middle = image.Size / 2;
        await image.ZeroAsync(middle, Math.Min(65536, image.Size - middle), ZeroFlags.None).ConfigureAwait(false);
        await image.TrimAsync(0, Math.Min(65536, image.Size), fua: false).ConfigureAwait(false);
        await image.FlushAsync().ConfigureAwait(false);
        await ReadAroundAsync(image).ConfigureAwait(false);
    }

    private static async Task ReadAroundAsync(IBlockDevice image)
    {
        if (image.Size <= 0) return;
        var buffer = new byte[ReadLength];
        var extents = new List<BlockExtent>();
        foreach (long offset in Offsets(image.Size))
        {
            int length = (int)Math.Min(buffer.Length, image.Size - offset);
            await image.ReadAsync(offset, buffer.AsMemory(0, length)).ConfigureAwait(false);
            extents.Clear();
            await image.GetBlockStatusAsync(offset, Math.Min(image.Size - offset, 1L << 30), extents).ConfigureAwait(false);
            if (extents.Count == 0) throw new InvalidOperationException($"block status at {offset} returned no extent");
        }
    }

    /// <summary>Start, a ragged offset near the start, middle and last bytes of the disk.</summary>
    private static IEnumerable<long> Offsets(long size)
    {
        yield return 0;
        if (size > 70000) yield return 65536 - 512 + 7;
        if (size > 2) yield return size / 2;
        if (size > 1) yield return Math.Max(0, size - 4096 - 3);
    }
}
