using NbdQcow.Image;
using NbdQcow.Image.Qcow2;

namespace NbdQcow.Tests.Unit.Formats;

/// <summary>The format registry: a format registered from outside the image library is probed, opened and used as a backing file.</summary>
public sealed class FormatRegistryTests : IDisposable
{
    private readonly TempDirectory _folder = new("format-registry");

    public FormatRegistryTests() => OffsetTestFormat.EnsureRegistered();

    public void Dispose() => _folder.Dispose();

    private static byte[] Disk()
    {
        var disk = new byte[256 * 1024];
        for (var i = 0; i < disk.Length; i++) disk[i] = (byte)(i * 7 + i / 4096);
        return disk;
    }

    [Fact]
    public async Task Registered_format_is_probed_by_its_magic_and_read()
    {
        var path = _folder.File("disk.nbq");
        var disk = Disk();
        OffsetTestFormat.Write(path, disk);
        Assert.Equal(OffsetTestFormat.FormatName, ImageOpener.ProbeFormat(path));
        await using var device = ImageOpener.Open(path, new ImageOpenOptions { MaxDirtyAge = null });
        var read = new byte[disk.Length];
        await device.ReadAsync(0, read);
        Assert.Equal(disk, read);
        // --journal names the format that cannot keep one.
        var refusal = Assert.Throws<ArgumentException>(() => ImageOpener.Open(path, new ImageOpenOptions { Journal = true }));
        Assert.Contains("a nbqtest image has no metadata to journal", refusal.Message);
    }

    [Fact]
    public async Task Qcow2_image_reads_through_to_a_backing_file_of_a_registered_format()
    {
        var backing = _folder.File("base.nbq");
        var disk = Disk();
        OffsetTestFormat.Write(backing, disk);
        var top = _folder.File("top.qcow2");
        Qcow2Creator.Create(top, new Qcow2CreateOptions { BackingFile = "base.nbq" });
        await using (var writable = ImageOpener.Open(top, new ImageOpenOptions { MaxDirtyAge = null }))
        {
            Assert.Equal(disk.Length, writable.Size);
            await writable.WriteAsync(65536, new byte[4096], fua: false);
        }
        await using var image = (Qcow2Image)ImageOpener.Open(top, new ImageOpenOptions { ReadOnly = true });
        Assert.Equal(OffsetTestFormat.FormatName, image.BackingFormat);
        var read = new byte[disk.Length];
        await image.ReadAsync(0, read);
        Array.Clear(disk, 65536, 4096);
        Assert.Equal(disk, read);
    }

    [Fact]
    public void Unknown_format_names_are_refused_listing_the_registered_ones()
    {
        var refusal = Assert.Throws<ArgumentException>(() => ImageFormats.Get("vmdk"));
        Assert.StartsWith("unknown image format 'vmdk' (allowed: raw, qcow2, bochs", refusal.Message);
        Assert.Throws<ArgumentException>(() => ImageFormats.Register(new OffsetTestFormat()));
    }
}
