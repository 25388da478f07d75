using Microsoft.Extensions.Time.Testing;
using NbdQcow.Cache;

namespace NbdQcow.Tests.Unit.HostIo;

public sealed class DirtyAgeFlusherTests
{
    private sealed class Owner
    {
        public DirtyAgeFlusher? Flusher;
        public int Flushes;

        public ValueTask FlushAsync()
        {
            var ticket = Flusher!.BeginFlush();
            Flushes++;
            Flusher.EndFlush(ticket);
            return ValueTask.CompletedTask;
        }
    }

    private static (Owner, DirtyAgeFlusher, FakeTimeProvider) Create()
    {
        var time = new FakeTimeProvider();
        var owner = new Owner();
        owner.Flusher = new DirtyAgeFlusher(TimeSpan.FromMilliseconds(1000), owner.FlushAsync, time);
        return (owner, owner.Flusher, time);
    }

    [Fact]
    public void A_change_is_flushed_once_it_is_older_than_max_age_and_not_before()
    {
        var (owner, flusher, time) = Create();
        flusher.NoteChangeCompleted();
        time.Advance(TimeSpan.FromMilliseconds(999));
        Assert.Equal(0, owner.Flushes);
        time.Advance(TimeSpan.FromMilliseconds(1));
        Assert.Equal(1, owner.Flushes);
        Assert.False(flusher.IsDirty);
        time.Advance(TimeSpan.FromSeconds(10));
        Assert.Equal(1, owner.Flushes);
    }

    [Fact]
    public void The_oldest_change_sets_the_deadline_not_the_newest()
    {
        var (owner, flusher, time) = Create();
        flusher.NoteChangeCompleted();
        for (var i = 0; i < 9; i++)
        {
            time.Advance(TimeSpan.FromMilliseconds(100));
            flusher.NoteChangeCompleted();
        }
        Assert.Equal(0, owner.Flushes);
        time.Advance(TimeSpan.FromMilliseconds(100));
        Assert.Equal(1, owner.Flushes);
    }

    [Fact]
    public void A_requested_flush_runs_in_the_background_at_once_whatever_the_age()
    {
        var (owner, flusher, time) = Create();
        flusher.NoteChangeCompleted();
        time.Advance(TimeSpan.FromMilliseconds(10));
        flusher.RequestFlush();
        time.Advance(TimeSpan.FromMilliseconds(1));
        Assert.Equal(1, owner.Flushes);
        Assert.False(flusher.IsDirty);
        time.Advance(TimeSpan.FromSeconds(5));
        Assert.Equal(1, owner.Flushes);
    }

    [Fact]
    public void A_client_flush_clears_the_dirty_state_and_cancels_the_background_flush()
    {
        var (owner, flusher, time) = Create();
        flusher.NoteChangeCompleted();
        time.Advance(TimeSpan.FromMilliseconds(500));
        _ = owner.FlushAsync();
        time.Advance(TimeSpan.FromSeconds(5));
        Assert.Equal(1, owner.Flushes);
        Assert.Equal(0, flusher.BackgroundFlushes);
    }

    [Fact]
    public void A_change_completed_during_a_flush_stays_dirty_and_is_flushed_one_window_after_the_flush_began()
    {
        var (owner, flusher, time) = Create();
        flusher.NoteChangeCompleted();
        time.Advance(TimeSpan.FromMilliseconds(300));
        var ticket = flusher.BeginFlush();
        flusher.NoteChangeCompleted(); // completes while the fdatasync runs
        time.Advance(TimeSpan.FromMilliseconds(200));
        flusher.EndFlush(ticket);
        Assert.True(flusher.IsDirty);
        time.Advance(TimeSpan.FromMilliseconds(799));
        Assert.Equal(0, owner.Flushes);
        time.Advance(TimeSpan.FromMilliseconds(1));
        Assert.Equal(1, owner.Flushes);
        Assert.False(flusher.IsDirty);
    }

    [Fact]
    public async Task A_failing_flush_is_reported_and_retried_one_window_later()
    {
        var time = new FakeTimeProvider();
        var errors = new List<Exception>();
        var attempts = 0;
        DirtyAgeFlusher? flusher = null;
        flusher = new DirtyAgeFlusher(TimeSpan.FromSeconds(1), () =>
        {
            attempts++;
            if (attempts == 1) throw new IOException("EIO");
            var ticket = flusher!.BeginFlush();
            flusher.EndFlush(ticket);
            return ValueTask.CompletedTask;
        }, time, errors.Add);
        flusher.NoteChangeCompleted();
        time.Advance(TimeSpan.FromSeconds(1));
        Assert.Single(errors);
        Assert.True(flusher.IsDirty);
        time.Advance(TimeSpan.FromMilliseconds(999));
        Assert.Equal(1, attempts);
        time.Advance(TimeSpan.FromMilliseconds(1));
        Assert.Equal(2, attempts);
        Assert.False(flusher.IsDirty);
        await flusher.DisposeAsync();
    }

    [Fact]
    public async Task With_the_system_clock_an_unflushed_change_is_flushed_within_the_window()
    {
        var owner = new Owner();
        owner.Flusher = new DirtyAgeFlusher(TimeSpan.FromMilliseconds(50), owner.FlushAsync);
        owner.Flusher.NoteChangeCompleted();
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        while (owner.Flusher.IsDirty && DateTime.UtcNow < deadline) await Task.Delay(10);
        Assert.False(owner.Flusher.IsDirty);
        Assert.Equal(1, owner.Flushes);
        await owner.Flusher.DisposeAsync();
    }
}
