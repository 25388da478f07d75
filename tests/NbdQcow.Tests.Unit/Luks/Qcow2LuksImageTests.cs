using System.Text;
using NbdQcow.HostIo;
using NbdQcow.Image;
using NbdQcow.Image.Luks;
using NbdQcow.Image.Qcow2;
using NbdQcow.Tests.Unit.Qcow2;

namespace NbdQcow.Tests.Unit.Luks;

/// <summary>LUKS-encrypted qcow2 images made and checked by qemu-img / qemu-io, read and written through <see cref="Qcow2Image"/>.</summary>
public sealed class Qcow2LuksImageTests : IDisposable
{
    private const string Secret = "123456"; // what QemuTools.CreateLuksImage uses
    private const string QemuOpts = "--object secret,id=sec0,data=123456 --image-opts driver=qcow2,file.filename=enc.qcow2,encrypt.key-secret=sec0";
    private readonly TempDirectory _folder = new("unit", diskBacked: true);

    public void Dispose() => _folder.Dispose();

    private Qcow2Image Open(bool readOnly, string secret = Secret) =>
        Qcow2Image.Open(_folder.File("enc.qcow2"), new ImageOpenOptions { ReadOnly = readOnly, MaxDirtyAge = null, EncryptionKey = Encoding.UTF8.GetBytes(secret) }, HostFile.Open);

    [Fact]
    public async Task Data_qemu_io_wrote_reads_back_identically_to_qemu_img_convert()
    {
        QemuTools.CreateLuksImage(_folder.Path, "enc.qcow2", "4M");
        QemuTools.Bash(_folder.Path, $"""
            qemu-io {QemuOpts} -c 'write -P 0x21 0 100k' -c 'write -P 0x22 1M 3k' -c 'write -P 0x23 2097663 777' -c 'write -z 3M 64k' >/dev/null
            qemu-img convert {QemuOpts} -O raw plain.raw
            """);
        await using var image = Open(readOnly: true);
        var data = new byte[image.Size];
        await image.ReadAsync(0, data);
        Assert.Equal(await File.ReadAllBytesAsync(_folder.File("plain.raw")), data);
        // An unaligned read inside a sector decrypts the same bytes.
        var piece = new byte[7];
        await image.ReadAsync(2097663 + 3, piece);
        Assert.All(piece, b => Assert.Equal(0x23, b));
    }

    [Fact]
    public async Task Writes_read_back_in_qemu_with_the_secret_and_qemu_img_check_is_clean()
    {
        QemuTools.CreateLuksImage(_folder.Path, "enc.qcow2", "4M");
        QemuTools.Bash(_folder.Path, $"qemu-io {QemuOpts} -c 'write -P 0x31 0 128k' >/dev/null");
        await using (var image = Open(readOnly: false))
        {
            var payload = Fill(1000, 0x41);
            await image.WriteAsync(513, payload, fua: false); // in place, unaligned at both ends
            Assert.All(payload, b => Assert.Equal(0x41, b)); // the caller's buffer is never encrypted in place
            await image.WriteAsync(1 << 20, Fill(4096, 0x42), fua: false); // new cluster, rest must read as zero
            await image.WriteAsync((2 << 20) - 100, Fill(300, 0x43), fua: false); // across a cluster boundary
            await image.ZeroAsync(64 << 10, 64 << 10, ZeroFlags.None);
            await image.FlushAsync();
        }
        QemuTools.Bash(_folder.Path, $"qemu-img check {QemuOpts}");
        QemuReads("read -P 0x31 0 513", "read -P 0x41 513 1000", "read -P 0x31 1513 64023", "read -P 0 64k 64k", "read -P 0x42 1M 4k",
            "read -P 0 1052672 61440", "read -P 0 983040 65536", "read -P 0x43 2097052 300", "read -P 0 2097352 65336");
        // What qemu reads, nbdqcow reads after reopening.
        await using var reopened = Open(readOnly: true);
        var back = new byte[4096];
        await reopened.ReadAsync(1 << 20, back);
        Assert.All(back, b => Assert.Equal(0x42, b));
    }

    [Fact]
    public void A_wrong_key_is_refused_with_one_line()
    {
        QemuTools.CreateLuksImage(_folder.Path, "enc.qcow2", "1M");
        var error = Assert.Throws<EncryptionKeyException>(() => Open(readOnly: true, secret: "12345"));
        Assert.Equal("wrong key: it opens none of the 1 active LUKS keyslot(s)", error.Message);
    }

    [Fact]
    public async Task An_image_nbdqcow_creates_opens_in_qemu_io_with_the_secret_and_checks_clean()
    {
        Qcow2Creator.Create(_folder.File("enc.qcow2"), new Qcow2CreateOptions
        {
            Size = 8 << 20,
            EncryptionSecret = Encoding.UTF8.GetBytes(Secret),
            EncryptionIterTime = TimeSpan.FromMilliseconds(10),
        });
        await using (var image = Open(readOnly: false))
            await image.WriteAsync(3 << 20, Fill(70000, 0x51), fua: true);
        QemuTools.Bash(_folder.Path, $"qemu-img check {QemuOpts}");
        QemuReads("read -P 0x51 3M 70000", "read -P 0 0 3M");
        QemuTools.Bash(_folder.Path, $"qemu-io {QemuOpts} -c 'write -P 0x52 5M 4k' >/dev/null");
        await using var reopened = Open(readOnly: true);
        var back = new byte[4096];
        await reopened.ReadAsync(5 << 20, back);
        Assert.All(back, b => Assert.Equal(0x52, b));
    }

    [Fact]
    public async Task Recover_needs_the_key_and_with_it_writes_the_decrypted_data_unencrypted_while_check_needs_no_key()
    {
        QemuTools.CreateLuksImage(_folder.Path, "enc.qcow2", "2M");
        QemuTools.Bash(_folder.Path, $"""
            qemu-io {QemuOpts} -c 'write -P 0x61 0 100k' -c 'write -P 0x62 1M 3k' >/dev/null
            qemu-img convert {QemuOpts} -O raw plain.raw
            """);
        var error = await Assert.ThrowsAsync<NbdQcow.Image.Qcow2.Recover.RecoveryInputException>(() =>
            NbdQcow.Image.Qcow2.Recover.Qcow2Recovery.RunAsync(_folder.File("enc.qcow2"), new NbdQcow.Image.Qcow2.Recover.RecoveryOptions { OutputPath = _folder.File("out.qcow2") }));
        Assert.Contains("LUKS-encrypted; recover needs its key", error.Message);
        Assert.Contains("nbdqcow check --repair all", error.Message);
        Assert.False(File.Exists(_folder.File("out.qcow2")));

        var report = await NbdQcow.Image.Qcow2.Recover.Qcow2Recovery.RunAsync(_folder.File("enc.qcow2"),
            new NbdQcow.Image.Qcow2.Recover.RecoveryOptions { OutputPath = _folder.File("out.qcow2"), EncryptionKey = Encoding.UTF8.GetBytes(Secret) });
        Assert.Contains(report.Notes, n => n.Contains("NOT encrypted"));
        Assert.Equal(0, report.OrphanDataClusters); // the LUKS header area is metadata, not lost data
        QemuTools.Bash(_folder.Path, "qemu-img check -q out.qcow2 && qemu-img compare -q -f qcow2 -F raw out.qcow2 plain.raw");

        using var file = HostFile.Open(_folder.File("enc.qcow2"), new HostFileOptions(ReadOnly: true, Direct: false));
        var check = NbdQcow.Image.Qcow2.Check.Qcow2Checker.Check(file, NbdQcow.Image.Qcow2.Check.Qcow2RepairMode.None);
        Assert.Null(check.FatalError);
        Assert.Equal(0L, check.Corruptions);
        Assert.Equal(0L, check.Leaks);
    }

    /// <summary>Runs qemu-io reads with patterns on the image (with its secret); every one must run and match.</summary>
    private void QemuReads(params string[] reads)
    {
        string output = QemuTools.Bash(_folder.Path, $"qemu-io {QemuOpts} {string.Join(' ', reads.Select(r => $"-c '{r}'"))} 2>&1");
        Assert.DoesNotContain("Pattern verification failed", output);
        Assert.Equal(reads.Length, output.Split('\n').Count(line => line.StartsWith("read ", StringComparison.Ordinal)));
    }

    private static byte[] Fill(int length, byte value)
    {
        var data = new byte[length];
        Array.Fill(data, value);
        return data;
    }
}
