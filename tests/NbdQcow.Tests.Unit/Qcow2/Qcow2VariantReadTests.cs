using NbdQcow.Image;
using NbdQcow.Tests.Unit.HostIo;

namespace NbdQcow.Tests.Unit.Qcow2;

/// <summary>
/// Every image variant qemu-img makes reads byte for byte as `qemu-img convert -O raw` reads it, and block status
/// agrees with `qemu-img map` on which ranges hold data.
/// </summary>
public sealed class Qcow2VariantReadTests
{
    public static TheoryData<string> Variants()
    {
        var data = new TheoryData<string>();
        foreach (var name in Qcow2ImageVariants.Scripts.Keys)
            data.Add(name);
        return data;
    }

    [Theory]
    [MemberData(nameof(Variants))]
    public async Task Variant_reads_identical_to_qemu_and_block_status_agrees_with_qemu_map(string variant)
    {
        using var folder = new TempDirectory("unit", diskBacked: true);
        Qcow2ImageVariants.Build(folder.Path, variant);
        string image = folder.File("img.qcow2");
        await AssertReadsLikeQemu(image, null, folder);
    }

    [Theory]
    [InlineData("s1")]
    [InlineData("s2")]
    [InlineData("1")]
    public async Task Internal_snapshot_reads_identical_to_qemu_convert_of_that_snapshot(string snapshot)
    {
        using var folder = new TempDirectory("unit", diskBacked: true);
        Qcow2ImageVariants.Build(folder.Path, "snapshots-active");
        await AssertReadsLikeQemu(folder.File("img.qcow2"), snapshot, folder);
    }

    [Fact]
    public async Task Two_tib_sparse_image_reads_written_ranges_and_reports_holes_without_reading_the_whole_disk()
    {
        using var folder = new TempDirectory("unit", diskBacked: true);
        const long size = 2L << 40;
        QemuTools.Bash(folder.Path, $"""
            qemu-img create -q -f qcow2 img.qcow2 {size}
            qemu-io -f qcow2 img.qcow2 -c "write -P 0x21 0 64k" -c "write -P 0x22 {(1L << 40) + 12345} 5000" -c "write -P 0x23 {size - 4096} 4096" >/dev/null
            """);
        long allocatedBefore = GC.GetAllocatedBytesForCurrentThread();
        await using var device = ImageOpener.Open(folder.File("img.qcow2"), new ImageOpenOptions { ReadOnly = true });
        Assert.Equal(size, device.Size);
        await AssertRange(device, 0, 64 * 1024, 0x21);
        await AssertRange(device, (1L << 40) + 12345, 5000, 0x22);
        await AssertRange(device, size - 4096, 4096, 0x23);
        await AssertRange(device, (1L << 40) + 12345 - 100, 100, 0);
        await AssertRange(device, 1L << 39, 1 << 20, 0);

        var extents = new List<BlockExtent>();
        await device.GetBlockStatusAsync(1L << 20, size - (2L << 20), extents);
        Assert.Equal(BlockExtentFlags.Hole | BlockExtentFlags.Zero, extents[0].Flags);
        Assert.True(extents[0].Length >= (1L << 40) - (2L << 20), $"first hole extent only {extents[0].Length} bytes");
        long allocated = GC.GetAllocatedBytesForCurrentThread() - allocatedBefore;
        Assert.True(allocated < 64L << 20, $"serving a 2 TiB sparse image allocated {allocated} bytes");
    }

    private static async Task AssertRange(IBlockDevice device, long offset, int length, byte expected)
    {
        var buffer = new byte[length];
        await device.ReadAsync(offset, buffer);
        int bad = Array.FindIndex(buffer, b => b != expected);
        Assert.True(bad < 0, $"byte at {offset + bad} is 0x{(bad < 0 ? 0 : buffer[bad]):x2}, expected 0x{expected:x2}");
    }

    private static async Task AssertReadsLikeQemu(string image, string? snapshot, TempDirectory folder)
    {
        string reference = folder.File("reference.raw");
        if (snapshot is null)
            QemuTools.RunIn(folder.Path, "qemu-img", "convert", "-f", "qcow2", "-O", "raw", image, reference);
        else
            QemuTools.RunIn(folder.Path, "qemu-img", "convert", "-f", "qcow2", "-O", "raw", "-l", snapshot.All(char.IsDigit) ? $"snapshot.id={snapshot}" : $"snapshot.name={snapshot}", image, reference);
        byte[] expected = await File.ReadAllBytesAsync(reference);

        await using var device = ImageOpener.Open(image, new ImageOpenOptions { ReadOnly = true, Snapshot = snapshot });
        Assert.Equal(expected.LongLength, device.Size);

        // Sequential reads in chunks that straddle clusters at odd offsets.
        var actual = new byte[expected.Length];
        const int chunk = (1 << 20) + 4099;
        for (int offset = 0; offset < actual.Length; offset += chunk)
            await device.ReadAsync(offset, actual.AsMemory(offset, Math.Min(chunk, actual.Length - offset)));
        AssertSame(expected, actual, 0);

        // Small reads at random offsets.
        var random = new Random(1234);
        for (int i = 0; i < 100; i++)
        {
            int length = random.Next(1, 20000);
            int offset = random.Next(0, expected.Length - length + 1);
            var buffer = new byte[length];
            await device.ReadAsync(offset, buffer);
            AssertSame(expected.AsSpan(offset, length).ToArray(), buffer, offset);
        }

        if (snapshot is null)
            await AssertBlockStatusAgreesWithQemuMap(device, image);
    }

    private static void AssertSame(byte[] expected, byte[] actual, long baseOffset)
    {
        int mismatch = expected.AsSpan().CommonPrefixLength(actual);
        Assert.True(mismatch == expected.Length,
            mismatch == expected.Length ? "" : $"first difference at guest offset {baseOffset + mismatch}: expected 0x{expected[mismatch]:x2}, read 0x{actual[mismatch]:x2}");
    }

    private static async Task AssertBlockStatusAgreesWithQemuMap(IBlockDevice device, string image)
    {
        var ours = new List<BlockExtent>();
        long offset = 0;
        while (offset < device.Size)
        {
            var part = new List<BlockExtent>();
            await device.GetBlockStatusAsync(offset, device.Size - offset, part);
            Assert.NotEmpty(part);
            foreach (var e in part)
            {
                Assert.True(e.Length > 0);
                ours.Add(e);
                offset += e.Length;
            }
        }
        Assert.Equal(device.Size, offset);

        // Walk both maps together: wherever qemu says "data" we must too, and wherever we say "zero" qemu must too.
        var qemu = QemuTools.Map(image);
        int i = 0;
        long ourStart = 0;
        foreach (var (start, length, data, zero) in qemu)
        {
            long pos = start;
            long end = start + length;
            while (pos < end)
            {
                while (ourStart + ours[i].Length <= pos)
                    ourStart += ours[i++].Length;
                var flags = ours[i].Flags;
                bool ourData = (flags & BlockExtentFlags.Hole) == 0;
                Assert.True(ourData == data, $"at {pos}: qemu-img map says data={data}, block status says flags={flags}");
                if ((flags & BlockExtentFlags.Zero) != 0)
                    Assert.True(zero, $"at {pos}: block status says zero, qemu-img map does not");
                pos = Math.Min(end, ourStart + ours[i].Length);
            }
        }
    }
}
