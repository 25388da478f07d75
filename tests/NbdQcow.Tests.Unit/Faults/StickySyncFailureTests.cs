using NbdQcow.Cache;
using NbdQcow.HostIo;
using NbdQcow.Image;
using NbdQcow.Image.Qcow2.Format;
using NbdQcow.Tests.Faults;
using NbdQcow.Tests.Unit.Qcow2Write;

namespace NbdQcow.Tests.Unit.Faults;

/// <summary>
/// After one failed fdatasync no later FLUSH, FUA or durable write may succeed until the image is reopened: the
/// kernel may have dropped the pages the failed sync covered, and a later sync would "succeed" without them.
/// </summary>
public sealed class StickySyncFailureTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    private (IBlockDevice Device, FaultPlan Plan) Open(string format, CacheMode mode)
    {
        var path = _dir.File("disk." + format);
        if (!File.Exists(path))
        {
            if (format == "qcow2") QemuImgTool.Create(path, "16M");
            else File.WriteAllBytes(path, new byte[16 << 20]);
        }
        // Fail exactly the first fdatasync once armed.
        var plan = new FaultPlan(HostCallKind.Flush, HostFault.Eio, failAt: 1) { Armed = false };
        var device = ImageOpener.Open(path, new ImageOpenOptions
        {
            CacheMode = mode,
            MaxDirtyAge = null,
            HostFileFactory = FaultInjectingHostFile.Factory(plan),
        });
        return (device, plan);
    }

    [Theory]
    [InlineData("raw", CacheMode.Writeback)]
    [InlineData("raw", CacheMode.None)]
    [InlineData("qcow2", CacheMode.Writeback)]
    [InlineData("qcow2", CacheMode.None)]
    public async Task Flush_after_a_failed_fdatasync_keeps_failing_with_eio_until_reopened(string format, CacheMode mode)
    {
        var (device, plan) = Open(format, mode);
        var data = Pattern(4096, 1);
        await device.WriteAsync(0, data, fua: false);
        await device.FlushAsync();
        await device.WriteAsync(65536, Pattern(4096, 2), fua: false);
        plan.Armed = true;
        var first = await Assert.ThrowsAsync<BlockDeviceException>(() => device.FlushAsync().AsTask());
        Assert.Equal(BlockError.Io, first.Error);
        Assert.Equal(1, plan.Failures);

        // The storage "recovered": the next fdatasync would succeed, yet the writes it covered may be gone.
        var second = await Assert.ThrowsAsync<BlockDeviceException>(() => device.FlushAsync().AsTask());
        Assert.Equal(BlockError.Io, second.Error);
        Assert.Contains("earlier fdatasync failed", second.Message);
        var fua = await Assert.ThrowsAsync<BlockDeviceException>(() => device.WriteAsync(8192, Pattern(4096, 3), fua: true).AsTask());
        Assert.Equal(BlockError.Io, fua.Error);
        // Plain writes into the volatile cache still work; only promises of durability are refused.
        await device.WriteAsync(12288, Pattern(4096, 4), fua: false);
        await Assert.ThrowsAsync<BlockDeviceException>(() => device.FlushAsync().AsTask());
        await Assert.ThrowsAnyAsync<Exception>(() => device.DisposeAsync().AsTask());

        // Reopened, the image works again and what was flushed before the failure is there.
        plan.Armed = false;
        var (reopened, _) = Open(format, mode);
        await using (reopened)
        {
            var back = new byte[4096];
            await reopened.ReadAsync(0, back);
            Assert.Equal(data, back);
            await reopened.WriteAsync(16384, Pattern(4096, 5), fua: true);
            await reopened.FlushAsync();
        }
        if (format == "qcow2") QemuImgTool.AssertClean(_dir.File("disk.qcow2"));
    }

    [Theory]
    [InlineData("raw", CacheMode.Writethrough)]
    [InlineData("raw", CacheMode.DirectSync)]
    [InlineData("qcow2", CacheMode.Writethrough)]
    [InlineData("qcow2", CacheMode.DirectSync)]
    public async Task Writethrough_writes_after_a_failed_fdatasync_all_fail(string format, CacheMode mode)
    {
        var (device, plan) = Open(format, mode);
        await device.WriteAsync(0, Pattern(4096, 1), fua: false);
        plan.Armed = true;
        await Assert.ThrowsAsync<BlockDeviceException>(() => device.WriteAsync(65536, Pattern(4096, 2), fua: false).AsTask());
        var later = await Assert.ThrowsAsync<BlockDeviceException>(() => device.WriteAsync(131072, Pattern(4096, 3), fua: false).AsTask());
        Assert.Equal(BlockError.Io, later.Error);
        await Assert.ThrowsAsync<BlockDeviceException>(() => device.FlushAsync().AsTask());
        await Assert.ThrowsAnyAsync<Exception>(() => device.DisposeAsync().AsTask());
    }

    [Fact]
    public async Task Qcow2_image_stays_marked_dirty_after_a_failed_fdatasync_and_is_checked_on_next_open()
    {
        var (device, plan) = Open("qcow2", CacheMode.Writeback);
        await device.WriteAsync(0, Pattern(65536, 1), fua: false);
        plan.Armed = true;
        await Assert.ThrowsAsync<BlockDeviceException>(() => device.FlushAsync().AsTask());
        plan.Armed = false;
        await Assert.ThrowsAnyAsync<Exception>(() => device.DisposeAsync().AsTask());

        var path = _dir.File("disk.qcow2");
        using (var file = HostFile.Open(path, new HostFileOptions(ReadOnly: true, Direct: false)))
        {
            var header = Qcow2Header.Read(file);
            Assert.True((header.IncompatibleFeatures & Qcow2IncompatibleFeatures.Dirty) != 0, "dirty bit not set after a failed fdatasync");
        }
        // The next read-write open rebuilds refcounts and clears the bit; the image is clean afterwards.
        await using (var reopened = ImageOpener.Open(path, new ImageOpenOptions { MaxDirtyAge = null }))
        {
            await reopened.FlushAsync();
        }
        QemuImgTool.AssertClean(path);
    }

    private static byte[] Pattern(int length, byte seed)
    {
        var data = new byte[length];
        for (var i = 0; i < data.Length; i++) data[i] = (byte)(seed * 31 + i % 251);
        return data;
    }
}
