using NbdQcow.Image.Qcow2;
using NbdQcow.Server;

namespace NbdQcow.Tests.Unit.Qcow2Write;

/// <summary>`nbdqcow create` and `nbdqcow check` as the CLI contract spells them (run in process; exit codes checked).</summary>
public sealed class Qcow2CliTests
{
    [Fact]
    public void Create_makes_a_v3_image_qemu_accepts_and_refuses_to_overwrite_it()
    {
        using var dir = new TempDirectory();
        var image = dir.File("new.qcow2");
        Assert.Equal(0, Program.Main(["create", image, "10G", "--cluster-size", "128K"]));
        var (code, output) = QemuImgTool.Run("info", "--output=json", image);
        Assert.Equal(0, code);
        Assert.Contains("\"virtual-size\": 10737418240", output);
        Assert.Contains("\"cluster-size\": 131072", output);
        Assert.Contains("\"compat\": \"1.1\"", output);
        QemuImgTool.AssertClean(image);
        long length = new FileInfo(image).Length;
        Assert.NotEqual(0, Program.Main(["create", image, "1G"]));
        Assert.Equal(length, new FileInfo(image).Length);
    }

    [Fact]
    public void Create_with_a_backing_file_records_it_with_its_format_and_takes_its_size()
    {
        using var dir = new TempDirectory();
        var backing = dir.File("base.raw");
        File.WriteAllBytes(backing, new byte[3 << 20]);
        var image = dir.File("overlay.qcow2");
        Assert.Equal(0, Program.Main(["create", image, "--backing", "base.raw"]));
        var (code, output) = QemuImgTool.Run("info", "--output=json", image);
        Assert.Equal(0, code);
        Assert.Contains("\"backing-filename\": \"base.raw\"", output);
        Assert.Contains("\"backing-filename-format\": \"raw\"", output);
        Assert.Contains("\"virtual-size\": 3145728", output);
    }

    [Theory]
    [InlineData("10G", 10L << 30)]
    [InlineData("512M", 512L << 20)]
    [InlineData("1T", 1L << 40)]
    [InlineData("64k", 65536)]
    [InlineData("1.5G", 3L << 29)]
    [InlineData("4096", 4096)]
    [InlineData("2MiB", 2L << 20)]
    public void Sizes_accept_binary_suffixes(string text, long expected) => Assert.Equal(expected, Qcow2Creator.ParseSize(text));

    [Theory]
    [InlineData("ten")]
    [InlineData("-5G")]
    [InlineData("1.5")]
    [InlineData("12Q")]
    public void Malformed_sizes_are_refused(string text) => Assert.Throws<FormatException>(() => Qcow2Creator.ParseSize(text));

    [Fact]
    public void Create_refuses_bad_cluster_sizes()
    {
        using var dir = new TempDirectory();
        Assert.NotEqual(0, Program.Main(["create", dir.File("a.qcow2"), "1G", "--cluster-size", "3000"]));
        Assert.NotEqual(0, Program.Main(["create", dir.File("b.qcow2"), "1G", "--cluster-size", "4M"]));
        Assert.False(File.Exists(dir.File("a.qcow2")));
        Assert.False(File.Exists(dir.File("b.qcow2")));
    }

    [Fact]
    public void Check_exits_0_when_clean_3_with_leaks_only_and_repairs_leaks()
    {
        using var dir = new TempDirectory();
        var image = dir.File("c.qcow2");
        Assert.Equal(0, Program.Main(["create", image, "64M"]));
        Assert.Equal(0, Program.Main(["check", image]));
        Assert.Equal(0, Program.Main(["check", image, "--json"]));
        // Leak one cluster: give a cluster inside the file a refcount nobody references.
        using (var stream = File.OpenWrite(image)) stream.SetLength(stream.Length + 65536);
        long leaked = new FileInfo(image).Length / 65536 - 1;
        using (var file = NbdQcow.HostIo.HostFile.Open(image, new NbdQcow.HostIo.HostFileOptions(false, false)))
        {
            var block = new byte[65536];
            file.Read(2 * 65536, block);
            NbdQcow.Image.Qcow2.Format.RefcountBlockCodec.Set(block, (int)leaked, 4, 1);
            file.Write(2 * 65536, block);
        }
        Assert.Equal(3, Program.Main(["check", image]));
        Assert.Equal(0, Program.Main(["check", image, "--repair", "leaks"]));
        Assert.Equal(0, Program.Main(["check", image]));
        QemuImgTool.AssertClean(image);
    }
}
