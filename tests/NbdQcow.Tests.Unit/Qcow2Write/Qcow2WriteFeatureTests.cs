using System.Buffers.Binary;
using NbdQcow.HostIo;
using NbdQcow.Image;
using NbdQcow.Image.Qcow2;
using NbdQcow.Image.Qcow2.Format;

namespace NbdQcow.Tests.Unit.Qcow2Write;

/// <summary>Write-side features on images made by qemu: lazy-refcount crash, autoclear bits, compressed and
/// snapshot-shared clusters, the overlap check.</summary>
public sealed class Qcow2WriteFeatureTests
{
    private static void QemuIo(string image, params string[] commands)
    {
        var info = new System.Diagnostics.ProcessStartInfo("qemu-io") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var c in commands) { info.ArgumentList.Add("-c"); info.ArgumentList.Add(c); }
        info.ArgumentList.Add(image);
        using var process = System.Diagnostics.Process.Start(info)!;
        process.StandardOutput.ReadToEnd();
        process.StandardError.ReadToEnd();
        Assert.True(process.WaitForExit(60_000), "qemu-io timed out");
    }

    private static Qcow2Image OpenWritable(string image) =>
        Qcow2Image.Open(image, new ImageOpenOptions { MaxDirtyAge = null }, HostFile.Open);

    private static byte[] Pattern(int length, byte seed)
    {
        var data = new byte[length];
        new Random(seed).NextBytes(data);
        return data;
    }

    [Fact]
    public async Task Dirty_image_left_by_a_lazy_refcounts_crash_gets_refcounts_rebuilt_before_the_first_write()
    {
        using var dir = new TempDirectory();
        var image = dir.File("lazy.qcow2");
        QemuImgTool.Create(image, "64M", "lazy_refcounts=on");
        QemuIo(image, "write -P 5 0 3M", "abort"); // qemu-io dies with the dirty bit set and refcounts stale
        Assert.Equal(2, QemuImgTool.Run("check", image).ExitCode);

        var model = new byte[64 << 20];
        Array.Fill(model, (byte)5, 0, 3 << 20);
        await using (var device = OpenWritable(image))
        {
            var data = Pattern(200_000, 1);
            await device.WriteAsync(2 << 20, data, fua: false);
            data.CopyTo(model, 2 << 20);
        }
        var raw = dir.File("model.raw");
        File.WriteAllBytes(raw, model);
        QemuImgTool.AssertClean(image);
        QemuImgTool.AssertSameAs(image, raw);
        using var file = HostFile.Open(image, new HostFileOptions(true, false));
        Assert.Equal(Qcow2IncompatibleFeatures.None, Qcow2Header.Read(file).IncompatibleFeatures & Qcow2IncompatibleFeatures.Dirty);
    }

    [Fact]
    public async Task Unknown_autoclear_bits_are_cleared_on_the_first_write_and_known_ones_kept()
    {
        using var dir = new TempDirectory();
        var image = dir.File("auto.qcow2");
        QemuImgTool.Create(image, "16M");
        using (var file = HostFile.Open(image, new HostFileOptions(false, false)))
        {
            var field = new byte[8];
            BinaryPrimitives.WriteUInt64BigEndian(field, 1UL << 5);
            file.Write(88, field);
        }
        await using (var device = OpenWritable(image))
        {
            using (var file = HostFile.Open(image, new HostFileOptions(true, false)))
                Assert.Equal(1UL << 5, (ulong)Qcow2Header.Read(file).AutoclearFeatures); // opening alone changes nothing
            await device.WriteAsync(0, Pattern(4096, 2), fua: false);
        }
        using (var file = HostFile.Open(image, new HostFileOptions(true, false)))
            Assert.Equal(Qcow2AutoclearFeatures.None, Qcow2Header.Read(file).AutoclearFeatures);
        QemuImgTool.AssertClean(image);
    }

    [Fact]
    public async Task Partial_writes_into_compressed_clusters_rewrite_them_and_release_the_compressed_range()
    {
        using var dir = new TempDirectory();
        var source = dir.File("source.raw");
        var model = new byte[8 << 20];
        for (int i = 0; i < model.Length; i += 4096) Pattern(2048, (byte)(i >> 12)).CopyTo(model, i); // compressible
        File.WriteAllBytes(source, model);
        var image = dir.File("compressed.qcow2");
        Assert.Equal(0, QemuImgTool.Run("convert", "-c", "-O", "qcow2", source, image).ExitCode);
        await using (var device = OpenWritable(image))
        {
            var random = new Random(3);
            for (int i = 0; i < 40; i++)
            {
                int length = random.Next(1, 100_000);
                long offset = random.NextInt64(0, model.Length - length);
                var data = Pattern(length, (byte)i);
                await device.WriteAsync(offset, data, fua: false);
                data.CopyTo(model, offset);
            }
            await device.ZeroAsync(1 << 20, 65536, ZeroFlags.None);
            Array.Clear(model, 1 << 20, 65536);
            await device.TrimAsync(3 << 20, 3 * 65536, fua: false);
            Array.Clear(model, 3 << 20, 3 * 65536);
        }
        var raw = dir.File("model.raw");
        File.WriteAllBytes(raw, model);
        QemuImgTool.AssertClean(image);
        QemuImgTool.AssertSameAs(image, raw);
    }

    [Fact]
    public async Task Writes_to_an_image_with_an_internal_snapshot_copy_shared_tables_and_leave_the_snapshot_intact()
    {
        using var dir = new TempDirectory();
        var image = dir.File("snap.qcow2");
        QemuImgTool.Create(image, "32M");
        QemuIo(image, "write -P 7 0 4M", "write -P 8 20M 1M");
        Assert.Equal(0, QemuImgTool.Run("snapshot", "-c", "before", image).ExitCode);
        var snapshotRaw = dir.File("snapshot.raw");
        Assert.Equal(0, QemuImgTool.Run("convert", "-O", "raw", image, snapshotRaw).ExitCode);
        var model = File.ReadAllBytes(snapshotRaw);
        await using (var device = OpenWritable(image))
        {
            var data = Pattern(100_000, 4);
            await device.WriteAsync(30_000, data, fua: false);
            data.CopyTo(model, 30_000);
            await device.ZeroAsync(2 << 20, 65536, ZeroFlags.None);
            Array.Clear(model, 2 << 20, 65536);
            await device.TrimAsync(20 << 20, 1 << 20, fua: false);
            Array.Clear(model, 20 << 20, 1 << 20);
            data = Pattern(5000, 5);
            await device.WriteAsync(25 << 20, data, fua: true);
            data.CopyTo(model, 25 << 20);
        }
        var raw = dir.File("model.raw");
        File.WriteAllBytes(raw, model);
        QemuImgTool.AssertClean(image);
        QemuImgTool.AssertSameAs(image, raw);
        var after = dir.File("snapshot-after.raw");
        Assert.Equal(0, QemuImgTool.Run("convert", "-l", "snapshot.name=before", "-O", "raw", image, after).ExitCode);
        Assert.True(File.ReadAllBytes(after).AsSpan().SequenceEqual(File.ReadAllBytes(snapshotRaw)), "the snapshot's content changed");
    }

    [Fact]
    public async Task Data_write_that_would_land_on_metadata_is_refused_and_marks_the_image_corrupt()
    {
        using var dir = new TempDirectory();
        var image = dir.File("overlap.qcow2");
        QemuImgTool.Create(image, "16M");
        QemuIo(image, "write -P 1 0 64k");
        long refblock;
        byte[] refblockBefore = new byte[65536];
        using (var file = HostFile.Open(image, new HostFileOptions(false, false)))
        {
            var header = Qcow2Header.Read(file);
            refblock = (long)BigEndianTable.Read(file, (long)header.RefcountTableOffset, 1)[0];
            file.Read(refblock, refblockBefore);
            long l2 = (long)(BigEndianTable.Read(file, (long)header.L1TableOffset, 1)[0] & L1Entry.OffsetMask);
            var entry = new byte[8];
            BinaryPrimitives.WriteUInt64BigEndian(entry, (ulong)refblock | L2Entry.CopiedFlag);
            file.Write(l2, entry); // guest cluster 0 now "maps" onto the refcount block
        }
        await using (var device = OpenWritable(image))
        {
            var error = await Assert.ThrowsAsync<BlockDeviceException>(async () => await device.WriteAsync(0, Pattern(4096, 9), fua: false));
            Assert.Contains("overlaps metadata", error.Message);
        }
        using (var file = HostFile.Open(image, new HostFileOptions(true, false)))
        {
            Assert.NotEqual(Qcow2IncompatibleFeatures.None, Qcow2Header.Read(file).IncompatibleFeatures & Qcow2IncompatibleFeatures.Corrupt);
            var refblockAfter = new byte[65536];
            file.Read(refblock, refblockAfter);
            Assert.True(refblockAfter.AsSpan().SequenceEqual(refblockBefore), "the refcount block was overwritten");
        }
        Assert.Throws<Qcow2FormatException>(() => OpenWritable(image)); // a corrupt image is not opened for writing
    }

    [Fact]
    public async Task Writes_zeroes_and_trims_with_a_raw_external_data_file_keep_the_data_file_a_valid_raw_image()
    {
        using var dir = new TempDirectory();
        var image = dir.File("ext.qcow2");
        QemuImgTool.Create(image, "16M", $"data_file={dir.File("ext.data")}", "data_file_raw=on");
        var model = new byte[16 << 20];
        await Qcow2WritePropertyTests.RunWorkloadAsync(image, model, 65536, 150, seed: 21, hasBacking: false);
        var raw = dir.File("model.raw");
        File.WriteAllBytes(raw, model);
        QemuImgTool.AssertClean(image);
        QemuImgTool.AssertSameAs(image, raw);
        var data = File.ReadAllBytes(dir.File("ext.data"));
        Assert.True(data.AsSpan(0, model.Length).SequenceEqual(model), "the raw data file differs from the guest view");
    }
}
