using NbdQcow.Image;
using NbdQcow.Image.Qcow2;
using NbdQcow.Tests.Unit.HostIo;

namespace NbdQcow.Tests.Unit.Qcow2;

/// <summary>
/// Enabled persistent dirty bitmaps record every write made through nbdqcow: qemu reads the stored bitmap back
/// (through qemu-nbd -B and nbdinfo) with exactly the right dirty ranges, the image checks clean, and while the
/// image is open the bitmap is marked in use so a crash can never leave it silently stale.
/// </summary>
public sealed class Qcow2BitmapTrackingTests : IDisposable
{
    private readonly TempDirectory _folder = new();

    public void Dispose() => _folder.Dispose();

    private List<(long Start, long Length, bool Dirty)> DirtyMap(string bitmap)
    {
        string output = QemuTools.RunIn(_folder.Path, "nbdinfo", $"--map=qemu:dirty-bitmap:{bitmap}", "--",
            "[", "qemu-nbd", "-r", "-f", "qcow2", "-B", bitmap, "img.qcow2", "]");
        var runs = new List<(long, long, bool)>();
        foreach (var line in output.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            var parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            runs.Add((long.Parse(parts[0]), long.Parse(parts[1]), parts[2] == "1"));
        }
        return runs;
    }

    private static List<(long Start, long End)> DirtyRanges(List<(long Start, long Length, bool Dirty)> map)
    {
        var ranges = new List<(long, long)>();
        foreach (var (start, length, dirty) in map)
            if (dirty)
                ranges.Add((start, start + length));
        return ranges;
    }

    [Fact]
    public async Task Enabled_bitmap_records_writes_zeroes_and_trims_and_qemu_reads_it_back_after_close()
    {
        const int k = 1024;
        QemuTools.Bash(_folder.Path, """
            qemu-img create -q -f qcow2 img.qcow2 64M
            qemu-img bitmap --add img.qcow2 b0
            qemu-img bitmap --add -g 4096 img.qcow2 fine
            qemu-img bitmap --add --disable img.qcow2 frozen
            qemu-io -f qcow2 img.qcow2 -c "write -P 1 1M 4k" >/dev/null
            """);
        string path = _folder.File("img.qcow2");
        await using (var image = (Qcow2Image)ImageOpener.Open(path, new ImageOpenOptions { MaxDirtyAge = null }))
        {
            Assert.False(image.IsReadOnly);
            Assert.All(image.BitmapDirectory, b => Assert.Equal(b.Enabled, b.InUse));
            await image.WriteAsync(10 * k * k + 100, new byte[5000], fua: false);
            await image.ZeroAsync(20 * k * k, 128 * k, ZeroFlags.None);
            await image.WriteAsync(64 * k * k - 512, new byte[512], fua: false);
            await image.TrimAsync(30 * k * k, 64 * k, fua: false);
            await image.FlushAsync();

            // While open, qemu sees the enabled bitmaps as in use (inconsistent), never as a stale clean bitmap.
            string info = QemuTools.RunIn(_folder.Path, "qemu-img", "info", "-U", "--output=json", "img.qcow2");
            Assert.Contains("in-use", info);
        }

        QemuTools.RunIn(_folder.Path, "qemu-img", "check", "img.qcow2");
        string closedInfo = QemuTools.RunIn(_folder.Path, "qemu-img", "info", "--output=json", "img.qcow2");
        Assert.DoesNotContain("in-use", closedInfo);

        Assert.Equal(
            [(1 * k * k, 1 * k * k + 64 * k), (10 * k * k, 10 * k * k + 64 * k), (20 * k * k, 20 * k * k + 128 * k),
             (30 * k * k, 30 * k * k + 64 * k), (64 * k * k - 64 * k, 64 * k * k)],
            DirtyRanges(DirtyMap("b0")));
        Assert.Equal(
            [(1 * k * k, 1 * k * k + 4 * k), (10 * k * k, 10 * k * k + 8 * k), (20 * k * k, 20 * k * k + 128 * k),
             (30 * k * k, 30 * k * k + 64 * k), (64 * k * k - 4 * k, 64 * k * k)],
            DirtyRanges(DirtyMap("fine")));
        Assert.Empty(DirtyRanges(DirtyMap("frozen")));
    }

    [Fact]
    public async Task Read_only_open_leaves_bitmaps_untouched()
    {
        QemuTools.Bash(_folder.Path, "qemu-img create -q -f qcow2 img.qcow2 16M; qemu-img bitmap --add img.qcow2 b0");
        byte[] before = await File.ReadAllBytesAsync(_folder.File("img.qcow2"));
        await using (var image = ImageOpener.Open(_folder.File("img.qcow2"), new ImageOpenOptions { ReadOnly = true }))
            await image.ReadAsync(0, new byte[4096]);
        Assert.Equal(before, await File.ReadAllBytesAsync(_folder.File("img.qcow2")));
    }
}
