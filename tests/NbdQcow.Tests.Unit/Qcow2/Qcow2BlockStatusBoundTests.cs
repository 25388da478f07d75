using NbdQcow.HostIo;
using NbdQcow.Image;
using NbdQcow.Image.Qcow2;
using NbdQcow.Tests.Shared;

namespace NbdQcow.Tests.Unit.Qcow2;

/// <summary>
/// One BLOCK_STATUS request gets a bounded answer even when a single unallocated run of the top image (up to a whole
/// L2 table's range) sits over a finely fragmented backing file: the answer covers a prefix instead of listing
/// every fragment in memory.
/// </summary>
public sealed class Qcow2BlockStatusBoundTests : IDisposable
{
    private const int Kib = 1024;
    private const int Fragments = 8192;
    private readonly TempDirectory _folder = new("unit", diskBacked: true);

    public void Dispose() => _folder.Dispose();

    /// <summary>top.qcow2 (empty) over base.raw: 4 KiB of data every 8 KiB, 64 MiB, so 16384 extents.</summary>
    private string FragmentedChain()
    {
        var basePath = _folder.File("base.raw");
        using (var file = new FileStream(basePath, FileMode.CreateNew, FileAccess.Write))
        {
            file.SetLength((long)Fragments * 8 * Kib);
            var block = new byte[4 * Kib];
            Array.Fill(block, (byte)0x42);
            for (var i = 0; i < Fragments; i++)
            {
                file.Position = (long)i * 8 * Kib;
                file.Write(block);
            }
        }
        QemuTools.Bash(_folder.Path, "qemu-img create -q -f qcow2 -b base.raw -F raw top.qcow2 64M");
        return _folder.File("top.qcow2");
    }

    [Fact]
    public async Task Base_allocation_over_a_fragmented_backing_file_is_bounded_and_exact_for_what_it_covers()
    {
        await using var image = Qcow2Image.Open(FragmentedChain(), new ImageOpenOptions { ReadOnly = true }, HostFile.Open);
        var extents = new List<BlockExtent>();
        await image.GetBlockStatusAsync(0, (long)Fragments * 8 * Kib, extents);
        Assert.True(extents.Count is > 0 and <= 4096, $"{extents.Count} extents for one request");
        long position = 0;
        foreach (var extent in extents)
        {
            // Whatever it covers is exact: data at every even 4 KiB block, holes between.
            var data = (extent.Flags & BlockExtentFlags.Hole) == 0;
            Assert.Equal(position / (4 * Kib) % 2 == 0, data);
            Assert.Equal(4 * Kib, extent.Length);
            position += extent.Length;
        }
        Assert.True(position < (long)Fragments * 8 * Kib);
    }
}
