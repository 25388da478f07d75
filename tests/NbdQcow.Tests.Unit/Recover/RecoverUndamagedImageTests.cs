using NbdQcow.Image.Qcow2.Recover;
using NbdQcow.Tests.Unit.HostIo;
using NbdQcow.Tests.Unit.Qcow2;

namespace NbdQcow.Tests.Unit.Recover;

/// <summary>Recovering an undamaged image of every kind qemu-img makes gives the same disk, clean, with exit code 0.</summary>
public sealed class RecoverUndamagedImageTests
{
    private const string Writes = "qemu-io -f qcow2 img.qcow2 -c 'write -P 0x11 0 100k' -c 'write -P 0x22 5M 3M' -c 'write -z 9M 1M' -c 'write -P 0x33 20M 17k' >/dev/null";

    [Theory]
    [InlineData("qemu-img create -q -f qcow2 -o compat=0.10,cluster_size=64k img.qcow2 24M", Writes)]
    [InlineData("qemu-img create -q -f qcow2 -o cluster_size=4k img.qcow2 24M", Writes)]
    [InlineData("qemu-img create -q -f qcow2 -o cluster_size=512 img.qcow2 24M", Writes)]
    [InlineData("qemu-img create -q -f qcow2 -o cluster_size=2M img.qcow2 24M", Writes)]
    [InlineData("qemu-img create -q -f qcow2 -o extended_l2=on,cluster_size=128k img.qcow2 24M", Writes)]
    [InlineData("qemu-img create -q -f qcow2 -o compression_type=zstd img.qcow2 24M", Writes)]
    [InlineData("qemu-img create -q -f raw src.raw 24M; qemu-io -f raw src.raw -c 'write -P 0x44 0 2M' -c 'write -P 0x45 7M 1M' >/dev/null", "qemu-img convert -c -O qcow2 src.raw img.qcow2")]
    [InlineData("qemu-img create -q -f raw src.raw 24M; qemu-io -f raw src.raw -c 'write -P 0x44 0 2M' >/dev/null", "qemu-img convert -c -O qcow2 -o compression_type=zstd src.raw img.qcow2")]
    [InlineData("qemu-img create -q -f qcow2 -o cluster_size=64k img.qcow2 24M", Writes + "; qemu-img snapshot -c one img.qcow2; qemu-io -f qcow2 img.qcow2 -c 'write -P 0x77 5M 64k' >/dev/null")]
    public async Task Recovered_image_reads_exactly_as_the_undamaged_original_and_is_check_clean(string create, string fill)
    {
        using var folder = new TempDirectory("unit", diskBacked: true);
        QemuTools.Bash(folder.Path, $"{create}\n{fill}");
        var report = await RecoverFixture.RecoverAsync(folder.File("img.qcow2"), folder.File("out.qcow2"));
        Assert.True(report.ExitCode == 0, RecoveryReportFormatter.ToText(report));
        Assert.True(RecoverFixture.Identical(folder.File("img.qcow2"), folder.File("out.qcow2")));
        RecoverFixture.AssertCheckClean(folder.File("out.qcow2"));
        Assert.Null(report.LostAndFoundPath);
        Assert.False(Directory.Exists(folder.File("out.qcow2.lost")));
    }

    [Fact]
    public async Task Raw_output_of_an_undamaged_image_reads_as_the_original()
    {
        using var folder = new TempDirectory("unit", diskBacked: true);
        // A virtual size that is not a multiple of the cluster size: the last cluster is cut at the end of the disk.
        QemuTools.Bash(folder.Path, "qemu-img create -q -f qcow2 -o cluster_size=64k img.qcow2 24577k\n" + Writes + "\nqemu-io -f qcow2 img.qcow2 -c 'write -P 0x5a 24M 1k' >/dev/null");
        var report = await RecoverFixture.RecoverAsync(folder.File("img.qcow2"), folder.File("out.raw"),
            new RecoveryOptions { OutputPath = "", Format = RecoveryOutputFormat.Raw });
        Assert.Equal(0, report.ExitCode);
        Assert.True(RecoverFixture.Identical(folder.File("img.qcow2"), folder.File("out.raw"), "raw"));
    }

    [Fact]
    public async Task Snapshot_view_is_recovered_as_the_snapshot_reads()
    {
        using var folder = new TempDirectory("unit", diskBacked: true);
        QemuTools.Bash(folder.Path, """
            qemu-img create -q -f qcow2 -o cluster_size=4k img.qcow2 8M
            qemu-io -f qcow2 img.qcow2 -c 'write -P 0x55 1M 64k' >/dev/null
            qemu-img snapshot -c before img.qcow2
            qemu-io -f qcow2 img.qcow2 -c 'write -P 0x99 1M 8k' -c 'write -P 0x98 6M 4k' >/dev/null
            qemu-img convert -l snapshot.name=before -O raw img.qcow2 before.raw
            """);
        var report = await RecoverFixture.RecoverAsync(folder.File("img.qcow2"), folder.File("out.qcow2"),
            new RecoveryOptions { OutputPath = "", Snapshot = "before" });
        Assert.Equal(0, report.ExitCode);
        Assert.Contains("before", report.View);
        Assert.True(RecoverFixture.Identical(folder.File("out.qcow2"), folder.File("before.raw"), "raw"));
        RecoverFixture.AssertCheckClean(folder.File("out.qcow2"));
    }

    [Fact]
    public async Task Savevm_snapshot_vm_state_past_the_disk_is_not_taken_for_orphan_tables_or_data()
    {
        using var folder = new TempDirectory("unit", diskBacked: true);
        // The VM state of `savevm` lives in L1 slots past the virtual size; its tables must count as referenced.
        QemuTools.Bash(folder.Path, """
            qemu-img create -q -f qcow2 -o cluster_size=4k img.qcow2 16M
            qemu-io -f qcow2 img.qcow2 -c 'write -P 7 0 64k' >/dev/null
            printf 'savevm s1\nquit\n' | timeout 90 qemu-system-x86_64 -M pc -accel tcg -nodefaults -display none -S -m 16 \
                -drive file=img.qcow2,if=ide,format=qcow2 -monitor stdio >/dev/null 2>&1
            qemu-img snapshot -l img.qcow2 | grep -q s1
            """);
        var report = await RecoverFixture.RecoverAsync(folder.File("img.qcow2"), folder.File("out.qcow2"));
        Assert.True(report.ExitCode == 0, RecoveryReportFormatter.ToText(report));
        Assert.Equal(0, report.OrphanL2Tables);
        Assert.True(RecoverFixture.Identical(folder.File("img.qcow2"), folder.File("out.qcow2")));
    }

    [Fact]
    public async Task Backing_file_is_not_followed_unless_keep_backing_and_then_the_chain_reads_as_before()
    {
        using var folder = new TempDirectory("unit", diskBacked: true);
        QemuTools.Bash(folder.Path, """
            qemu-img create -q -f raw base.raw 8M
            qemu-io -f raw base.raw -c 'write -P 0xbb 0 8M' >/dev/null
            qemu-img create -q -f qcow2 -b base.raw -F raw -o cluster_size=64k img.qcow2
            qemu-io -f qcow2 img.qcow2 -c 'write -P 0x11 1M 64k' -c 'write -z 2M 64k' -c 'write -P 0 3M 64k' >/dev/null
            """);
        var plain = await RecoverFixture.RecoverAsync(folder.File("img.qcow2"), folder.File("plain.qcow2"));
        Assert.Contains(plain.Notes, n => n.Contains("NOT followed"));
        QemuTools.Bash(folder.Path, "qemu-io -f qcow2 plain.qcow2 -c 'read -P 0 0 1M' -c 'read -P 0x11 1M 64k' | grep -c '^read' | grep -q 2");

        var kept = await RecoverFixture.RecoverAsync(folder.File("img.qcow2"), folder.File("kept.qcow2"),
            new RecoveryOptions { OutputPath = "", KeepBacking = true });
        Assert.Equal(0, kept.ExitCode);
        Assert.True(RecoverFixture.Identical(folder.File("img.qcow2"), folder.File("kept.qcow2"))); // zero and zero-data clusters still hide the backing file
        RecoverFixture.AssertCheckClean(folder.File("kept.qcow2"));
        await Assert.ThrowsAsync<RecoveryInputException>(() => RecoverFixture.RecoverAsync(folder.File("img.qcow2"), folder.File("kept.raw"),
            new RecoveryOptions { OutputPath = "", KeepBacking = true, Format = RecoveryOutputFormat.Raw }));
    }
}
