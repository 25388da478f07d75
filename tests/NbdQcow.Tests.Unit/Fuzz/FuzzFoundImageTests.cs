using NbdQcow.HostIo;
using NbdQcow.Image;
using NbdQcow.Image.Qcow2;
using NbdQcow.Image.Qcow2.Format;
using NbdQcow.Tests.Unit.HostIo;

namespace NbdQcow.Tests.Unit.Fuzz;

/// <summary>
/// Images found by tests/fuzz (target qcow2-image) that hung or crashed the server: each must now fail with the
/// documented error (a format error at open, or a block error on the request) within seconds.
/// </summary>
public sealed class FuzzFoundImageTests : IDisposable
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(15);
    private readonly TempDirectory _folder = new();

    public void Dispose() => _folder.Dispose();

    /// <summary>
    /// 512-byte clusters, 64-bit refcounts, and a refcount table whose first entry is empty although the header,
    /// refcount table and L1 live in that range. The allocator placed a new refcount block on cluster 0 (the header),
    /// whose offset 0 then read as "no block", and created it again forever: the first write spun a core.
    /// </summary>
    [Fact]
    public async Task Write_to_image_whose_first_refcount_block_is_missing_fails_instead_of_spinning()
    {
        var bytes = FuzzInput.FromRuns(1586,
            (0, "514649fb00000003"), (23, "09000000000002"), (39, "040000000000000600000000000000020000000001"),
            (99, "0600000070"), (172, "ff"), (536, "04"),
            (1049, "01000000000000000100000000000000010000000000000001"), (1471, "fffffffc"), (1509, "15"));
        string path = _folder.File("missing-refblock.qcow2");
        await File.WriteAllBytesAsync(path, bytes);

        var write = Task.Run(async () =>
        {
            await using var image = Qcow2Image.Open(path, new ImageOpenOptions { MaxDirtyAge = null }, HostFile.Open);
            await image.WriteAsync(0, new byte[8192], fua: false);
        });
        // Either refusal is right: the read-write open finds metadata the refcounts do not count, or the first
        // allocation finds no refcount block for clusters in use. Both name the repair; neither may spin.
        var error = await Assert.ThrowsAnyAsync<Exception>(() => write.WaitAsync(Deadline));
        Assert.True(error is Qcow2FormatException or BlockDeviceException, $"unexpected {error.GetType().Name}: {error.Message}");
        Assert.Contains("check --repair all", error.Message);
        var header = await File.ReadAllBytesAsync(path);
        Assert.Equal(bytes.AsSpan(0, 512).ToArray(), header.AsSpan(0, 512).ToArray());
    }
}
