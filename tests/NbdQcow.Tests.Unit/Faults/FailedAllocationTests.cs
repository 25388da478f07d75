using NbdQcow.HostIo;
using NbdQcow.Image;
using NbdQcow.Tests.Faults;
using NbdQcow.Tests.Unit.Qcow2Write;

namespace NbdQcow.Tests.Unit.Faults;

/// <summary>
/// An allocating qcow2 write that fails (ENOSPC, EDQUOT, EIO, a short write) gives its new cluster back, so retrying
/// it until space returns allocates once and the image is left without leaks.
/// </summary>
public sealed class FailedAllocationTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    [Theory]
    [InlineData(HostFault.NoSpace)]
    [InlineData(HostFault.QuotaExceeded)]
    [InlineData(HostFault.ShortWrite)]
    [InlineData(HostFault.Eio)]
    public async Task Failed_allocating_write_retried_many_times_leaves_no_leaked_cluster(HostFault fault)
    {
        var path = _dir.File("disk.qcow2");
        QemuImgTool.Create(path, "16M");
        // The next 20 data writes fail, as when a write is held and retried while the disk is full.
        var plan = new FaultPlan(HostCallKind.Write, fault, failAt: 1, maxFailures: 20) { Armed = false };
        var data = new byte[65536];
        Random.Shared.NextBytes(data);
        await using (var device = ImageOpener.Open(path, new ImageOpenOptions { MaxDirtyAge = null, HostFileFactory = FaultInjectingHostFile.Factory(plan) }))
        {
            plan.Armed = true;
            var attempts = 0;
            while (true)
            {
                attempts++;
                try
                {
                    await device.WriteAsync(1 << 20, data, fua: false);
                    break;
                }
                catch (BlockDeviceException e)
                {
                    Assert.Equal(fault == HostFault.Eio ? BlockError.Io : BlockError.NoSpace, e.Error);
                    Assert.True(attempts < 50, "the write never succeeded");
                }
            }
            Assert.Equal(21, attempts);
            await device.FlushAsync();
            var back = new byte[data.Length];
            await device.ReadAsync(1 << 20, back);
            Assert.Equal(data, back);
        }
        QemuImgTool.AssertClean(path);
    }
}
