using NbdQcow.HostIo;
using NbdQcow.Tests.Unit.HostIo;

namespace NbdQcow.Tests.Unit.Migration;

/// <summary>
/// <see cref="ImageLock"/> follows qemu's rules between two open file descriptions (OFD locks conflict across
/// descriptions even inside one process), and leaves the lock bytes as qemu lays them out (read back from /proc/locks).
/// </summary>
public sealed class ImageLockTests : IDisposable
{
    private readonly TempDirectory _folder = new();
    private readonly string _image;

    public ImageLockTests()
    {
        _image = _folder.File("disk.img");
        File.WriteAllBytes(_image, new byte[4096]);
    }

    public void Dispose() => _folder.Dispose();

    [Fact]
    public void A_second_writer_is_refused_with_qemus_message_and_the_first_keeps_its_locks()
    {
        using var first = ImageLock.Acquire(_image, ImageLockSet.Writer);
        var refusal = Assert.Throws<ImageLockConflictException>(() => ImageLock.Acquire(_image, ImageLockSet.Writer));
        Assert.Contains("Failed to get \"write\" lock", refusal.Message);
        Assert.StartsWith(_image, refusal.Message);
        Assert.Equal([100, 101, 103, 201, 203], LockedBytes());
    }

    [Fact]
    public void Readers_share_with_each_other_but_not_with_a_writer_either_way()
    {
        using (var reader = ImageLock.Acquire(_image, ImageLockSet.Reader))
        using (var otherReader = ImageLock.Acquire(_image, ImageLockSet.Reader))
        {
            var writer = Assert.Throws<ImageLockConflictException>(() => ImageLock.Acquire(_image, ImageLockSet.Writer));
            Assert.Contains("Failed to get \"write\" lock", writer.Message);
        }
        using var heldWriter = ImageLock.Acquire(_image, ImageLockSet.Writer);
        var lateReader = Assert.Throws<ImageLockConflictException>(() => ImageLock.Acquire(_image, ImageLockSet.Reader));
        Assert.Contains("Failed to get shared \"write\" lock", lateReader.Message);
    }

    [Fact]
    public void A_force_share_reader_coexists_with_a_writer()
    {
        using var writer = ImageLock.Acquire(_image, ImageLockSet.Writer);
        using var shared = ImageLock.Acquire(_image, ImageLocking.ForceShare, readOnly: true);
        Assert.NotNull(shared);
        Assert.Equal(ImageLockSet.SharedReader, shared.Set);
    }

    [Fact]
    public void Dropping_to_shared_read_lets_a_writer_in_and_taking_write_back_is_then_refused_without_losing_the_read_lock()
    {
        using var source = ImageLock.Acquire(_image, ImageLockSet.Writer);
        source.Change(ImageLockSet.SharedReader);
        Assert.Equal([100], LockedBytes());
        using var destination = ImageLock.Acquire(_image, ImageLockSet.Writer);
        Assert.Throws<ImageLockConflictException>(() => source.Change(ImageLockSet.Writer));
        Assert.Equal(ImageLockSet.SharedReader, source.Set);
        destination.Dispose();
        Assert.Equal([100], LockedBytes());
        source.Change(ImageLockSet.Writer);
        Assert.Equal([100, 101, 103, 201, 203], LockedBytes());
    }

    [Fact]
    public void Locking_off_takes_nothing_and_force_share_is_refused_for_a_writer()
    {
        Assert.Null(ImageLock.Acquire(_image, ImageLocking.Off, readOnly: false));
        Assert.Throws<ArgumentException>(() => ImageLock.Acquire(_image, ImageLocking.ForceShare, readOnly: false));
        Assert.Empty(LockedBytes());
    }

    /// <summary>Every byte of the image locked by anyone, from /proc/locks (device:inode matched via ls -i).</summary>
    private List<int> LockedBytes()
    {
        var inode = new FileInfo(_image).Exists ? InodeOf(_image) : "";
        var bytes = new SortedSet<int>();
        foreach (var line in File.ReadLines("/proc/locks"))
        {
            var fields = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            var at = Array.FindIndex(fields, f => f.EndsWith(":" + inode, StringComparison.Ordinal) && f.Count(c => c == ':') == 2);
            if (at < 0 || at + 2 >= fields.Length) continue;
            for (var b = int.Parse(fields[at + 1]); b <= int.Parse(fields[at + 2]); b++) bytes.Add(b);
        }
        return [.. bytes];
    }

    private static string InodeOf(string path)
    {
        using var process = System.Diagnostics.Process.Start(new System.Diagnostics.ProcessStartInfo("stat", ["-c", "%i", path])
        {
            RedirectStandardOutput = true,
        })!;
        var text = process.StandardOutput.ReadToEnd().Trim();
        process.WaitForExit();
        return text;
    }
}
