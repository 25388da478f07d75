using NbdQcow.Cache;
using NbdQcow.Image;
using NbdQcow.Image.Qcow2;
using NbdQcow.Image.Raw;

namespace NbdQcow.Tests.Unit.Qcow2Write;

/// <summary>
/// What the images report for the dirty-bytes and dirty-age metrics: unflushed bytes and the age of the oldest
/// unflushed change grow with writes that are not durable and drop to zero with the durable flush that covers them;
/// writes made durable before they are acknowledged (FUA, writethrough) never count.
/// </summary>
public sealed class UnflushedChangesTests
{
    [Theory]
    [InlineData("qcow2")]
    [InlineData("raw")]
    public async Task Unflushed_bytes_and_their_age_grow_with_writes_and_drop_to_zero_with_a_flush(string format)
    {
        using var dir = new TempDirectory();
        var flushes = new List<TimeSpan>();
        var options = new ImageOpenOptions { MaxDirtyAge = null, FlushCompleted = elapsed => { lock (flushes) flushes.Add(elapsed); } };
        await using var image = Open(dir, format, options);
        var changes = ((IUnflushedChangesSource)image).UnflushedChanges!;
        Assert.Equal(0, changes.DirtyBytes);
        Assert.Equal(TimeSpan.Zero, changes.OldestAge);

        await image.WriteAsync(0, new byte[4096], fua: false);
        await image.WriteAsync(1 << 20, new byte[65536], fua: false);
        await image.ZeroAsync(2 << 20, 8192, ZeroFlags.None);
        await Task.Delay(50);
        Assert.Equal(4096 + 65536 + 8192, changes.DirtyBytes);
        Assert.True(changes.OldestAge >= TimeSpan.FromMilliseconds(50), $"oldest age {changes.OldestAge}");

        await image.FlushAsync();
        Assert.Equal(0, changes.DirtyBytes);
        Assert.Equal(TimeSpan.Zero, changes.OldestAge);
        Assert.NotEmpty(flushes);

        // A FUA write is durable when acknowledged: nothing is left unflushed.
        await image.WriteAsync(3 << 20, new byte[4096], fua: true);
        Assert.Equal(0, changes.DirtyBytes);
        Assert.Equal(TimeSpan.Zero, changes.OldestAge);
    }

    [Fact]
    public async Task In_writethrough_nothing_is_ever_unflushed()
    {
        using var dir = new TempDirectory();
        await using var image = Open(dir, "qcow2", new ImageOpenOptions { CacheMode = CacheMode.Writethrough });
        await image.WriteAsync(0, new byte[65536], fua: false);
        var changes = ((IUnflushedChangesSource)image).UnflushedChanges!;
        Assert.Equal(0, changes.DirtyBytes);
        Assert.Equal(TimeSpan.Zero, changes.OldestAge);
    }

    [Fact]
    public void A_change_completed_while_a_flush_runs_stays_unflushed_and_no_older_than_that_flush()
    {
        var changes = new UnflushedChanges();
        changes.NoteChangeCompleted(100);
        var ticket = changes.BeginFlush();
        changes.NoteChangeCompleted(7);
        changes.EndFlush(ticket);
        Assert.Equal(7, changes.DirtyBytes);
        Assert.True(changes.OldestAge > TimeSpan.Zero);
        changes.EndFlush(changes.BeginFlush());
        Assert.Equal(0, changes.DirtyBytes);
        Assert.Equal(TimeSpan.Zero, changes.OldestAge);
    }

    private static IBlockDevice Open(TempDirectory dir, string format, ImageOpenOptions options)
    {
        if (format == "raw")
        {
            var raw = dir.File("disk.img");
            using (var file = File.Create(raw)) file.SetLength(64 << 20);
            return RawImage.Open(raw, options);
        }
        var path = dir.File("disk.qcow2");
        Qcow2Creator.Create(path, new Qcow2CreateOptions { Size = 64 << 20, ClusterSize = 65536 });
        return ImageOpener.Open(path, options);
    }
}
