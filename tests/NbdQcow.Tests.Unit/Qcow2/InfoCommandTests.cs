using System.Text.Json;
using NbdQcow.Tests.Unit.HostIo;

namespace NbdQcow.Tests.Unit.Qcow2;

/// <summary>`nbdqcow info` (the real CLI process) reports what qemu-img info reports for the same images.</summary>
public sealed class InfoCommandTests
{
    private static string Nbdqcow(string folder, params string[] args) =>
        QemuTools.RunIn(folder, "dotnet", [Path.Combine(AppContext.BaseDirectory, "nbdqcow.dll"), .. args]);

    [Fact]
    public void Info_json_shows_header_features_backing_chain_snapshots_bitmaps_and_allocation()
    {
        using var folder = new TempDirectory("unit", diskBacked: true);
        QemuTools.Bash(folder.Path, """
            qemu-img create -q -f raw base.raw 4M
            qemu-img create -q -f qcow2 -b base.raw -F raw mid.qcow2
            qemu-img create -q -f qcow2 -b mid.qcow2 -F qcow2 -o extended_l2=on,compression_type=zstd,cluster_size=128k img.qcow2
            qemu-io -f qcow2 img.qcow2 -c "write 0 256k" -c "write -z 1M 128k" >/dev/null
            qemu-img snapshot -c before-upgrade img.qcow2
            qemu-img bitmap --add -g 1M img.qcow2 nightly
            """);
        using var json = JsonDocument.Parse(Nbdqcow(folder.Path, "info", "--json", "img.qcow2"));
        var root = json.RootElement;
        Assert.Equal("qcow2", root.GetProperty("format").GetString());
        Assert.Equal(4L << 20, root.GetProperty("virtual-size").GetInt64());
        Assert.Equal(128 * 1024, root.GetProperty("cluster-size").GetInt32());
        Assert.Equal("zstd", root.GetProperty("compression-type").GetString());
        Assert.True(root.GetProperty("extended-l2").GetBoolean());
        Assert.Contains("extended L2 entries (bit 4)", root.GetProperty("incompatible-features").EnumerateArray().Select(e => e.GetString()));
        var chain = root.GetProperty("backing-chain").EnumerateArray().Select(e => (e.GetProperty("filename").GetString(), e.GetProperty("format").GetString())).ToList();
        Assert.Equal([(folder.File("img.qcow2"), "qcow2"), (folder.File("mid.qcow2"), "qcow2"), (folder.File("base.raw"), "raw")], chain);
        Assert.Equal("before-upgrade", root.GetProperty("snapshots")[0].GetProperty("name").GetString());
        var bitmap = root.GetProperty("bitmaps")[0];
        Assert.Equal("nightly", bitmap.GetProperty("name").GetString());
        Assert.Equal(1 << 20, bitmap.GetProperty("granularity").GetInt32());
        var allocation = root.GetProperty("allocation");
        Assert.Equal(256 * 1024, allocation.GetProperty("data-bytes").GetInt64());
        Assert.Equal(128 * 1024, allocation.GetProperty("zero-bytes").GetInt64());
        Assert.Equal((4L << 20) - 384 * 1024, allocation.GetProperty("unallocated-bytes").GetInt64());
    }

    [Fact]
    public void Info_text_of_a_raw_image_and_the_encryption_fields_of_an_encrypted_one_without_its_key()
    {
        using var folder = new TempDirectory("unit", diskBacked: true);
        QemuTools.Bash(folder.Path, "qemu-img create -q -f raw disk.raw 3M");
        QemuTools.CreateLuksImage(folder.Path, "enc.qcow2", "1M");
        string text = Nbdqcow(folder.Path, "info", "disk.raw");
        Assert.Contains("format: raw", text);
        Assert.Contains("virtual size: 3 MiB (3145728 bytes)", text);
        using var json = JsonDocument.Parse(Nbdqcow(folder.Path, "info", "--output=json", "enc.qcow2"));
        var encryption = json.RootElement.GetProperty("encryption");
        Assert.Equal("aes", encryption.GetProperty("cipher").GetString());
        Assert.Equal("xts-plain64", encryption.GetProperty("cipher-mode").GetString());
        Assert.Equal("sha256", encryption.GetProperty("hash").GetString());
        Assert.Equal(1, encryption.GetProperty("keyslots-active").GetInt32());
        Assert.True(encryption.GetProperty("keyslots")[0].GetProperty("iterations").GetInt64() > 0);
        Assert.DoesNotContain("123456", json.RootElement.GetRawText());
    }
}
