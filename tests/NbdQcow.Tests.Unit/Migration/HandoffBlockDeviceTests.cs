using NbdQcow.HostIo;
using NbdQcow.Image;
using NbdQcow.Server.Control;
using NbdQcow.Tests.Unit.HostIo;

namespace NbdQcow.Tests.Unit.Migration;

/// <summary>
/// <see cref="HandoffBlockDevice"/>: inactivation lets a writer in and fails requests with ESHUTDOWN (flush excepted),
/// activation is refused while that writer holds the image and reads the image afresh once it is gone.
/// </summary>
public sealed class HandoffBlockDeviceTests : IDisposable
{
    private readonly TempDirectory _folder = new();
    private readonly string _image;
    private readonly ImageOpenOptions _options = new() { Locking = ImageLocking.On, MaxDirtyAge = null };

    public HandoffBlockDeviceTests()
    {
        _image = _folder.File("disk.img");
        File.WriteAllBytes(_image, new byte[1 << 20]);
    }

    public void Dispose() => _folder.Dispose();

    [Fact]
    public async Task Inactive_device_refuses_io_lets_another_writer_in_and_activates_only_after_it_left_seeing_its_data()
    {
        await using var device = HandoffBlockDevice.OpenActive(_image, _options);
        await device.WriteAsync(0, new byte[] { 1, 2, 3, 4 }, fua: false);
        Assert.Throws<ImageLockConflictException>(() => ImageLock.Acquire(_image, ImageLockSet.Writer));

        Assert.True((await device.InactivateAsync()).Changed);
        Assert.False(device.IsActive);
        var refused = await Assert.ThrowsAsync<BlockDeviceException>(async () => await device.ReadAsync(0, new byte[4]));
        Assert.Equal(BlockError.Shutdown, refused.Error);
        await device.FlushAsync();
        Assert.Equal(new byte[] { 1, 2, 3, 4 }, File.ReadAllBytes(_image)[..4]);

        using (var other = ImageLock.Acquire(_image, ImageLockSet.Writer))
        {
            await Assert.ThrowsAsync<ImageLockConflictException>(() => device.ActivateAsync());
            Assert.False(device.IsActive);
            await using var stream = new FileStream(_image, FileMode.Open, FileAccess.Write, FileShare.ReadWrite);
            stream.Write([9, 9]);
        }

        Assert.True((await device.ActivateAsync()).Changed);
        var buffer = new byte[4];
        await device.ReadAsync(0, buffer);
        Assert.Equal(new byte[] { 9, 9, 3, 4 }, buffer);
        Assert.False((await device.ActivateAsync()).Changed);
    }

    [Fact]
    public async Task Started_inactive_announces_the_writable_size_and_flags_and_holds_only_the_shared_read_byte()
    {
        await using var device = HandoffBlockDevice.OpenInactive(_image, _options);
        Assert.False(device.IsActive);
        Assert.Equal(1L << 20, device.Size);
        Assert.Equal(BlockDeviceFeatures.None, device.Features & BlockDeviceFeatures.ReadOnly);
        Assert.NotEqual(BlockDeviceFeatures.None, device.Features & BlockDeviceFeatures.Zero);
        using (ImageLock.Acquire(_image, ImageLockSet.Writer))
        {
            // A writer (the source) coexists with an inactive destination.
        }
        Assert.True((await device.ActivateAsync()).Changed);
        await device.WriteAsync(4096, new byte[] { 7 }, fua: true);
        Assert.Equal(7, File.ReadAllBytes(_image)[4096]);
    }
}
