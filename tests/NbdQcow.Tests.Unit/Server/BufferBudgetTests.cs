using NbdQcow.Server.Nbd;

namespace NbdQcow.Tests.Unit.Server;

/// <summary>The server-wide payload budget: back-pressure, a per-connection share, and no deadlock.</summary>
public sealed class BufferBudgetTests
{
    private const long Mib = 1024 * 1024;

    [Fact]
    public async Task A_request_past_the_budget_waits_until_another_connection_releases()
    {
        var budget = new BufferBudget(128 * Mib); // a quarter, 32 MiB, per connection
        var accounts = new[] { new BufferAccount(), new BufferAccount(), new BufferAccount(), new BufferAccount() };
        foreach (var account in accounts)
        {
            Assert.True(budget.AcquireAsync(account, 32 * Mib, CancellationToken.None).IsCompletedSuccessfully);
        }

        var late = new BufferAccount();
        var waiting = budget.AcquireAsync(late, Mib, CancellationToken.None).AsTask();
        Assert.False(waiting.IsCompleted);
        budget.Release(accounts[2], 32 * Mib);
        await waiting.WaitAsync(TimeSpan.FromSeconds(5));
        Assert.Equal(97 * Mib, budget.Used);
        Assert.Equal(Mib, late.Held);
    }

    [Fact]
    public void One_connection_holds_at_most_its_share_while_others_are_still_served()
    {
        var budget = new BufferBudget(256 * Mib);
        Assert.Equal(64 * Mib, budget.PerConnectionLimit);
        var greedy = new BufferAccount();
        Assert.True(budget.AcquireAsync(greedy, 32 * Mib, CancellationToken.None).IsCompletedSuccessfully);
        Assert.True(budget.AcquireAsync(greedy, 32 * Mib, CancellationToken.None).IsCompletedSuccessfully);
        Assert.False(budget.AcquireAsync(greedy, 4096, CancellationToken.None).IsCompleted);
        Assert.True(budget.AcquireAsync(new BufferAccount(), 32 * Mib, CancellationToken.None).IsCompletedSuccessfully);
    }

    [Fact]
    public void Contended_only_when_a_request_within_its_share_waits_for_the_budget()
    {
        var budget = new BufferBudget(64 * Mib); // 32 MiB per connection
        var a = new BufferAccount();
        var b = new BufferAccount();
        Assert.True(budget.AcquireAsync(a, 32 * Mib, CancellationToken.None).IsCompletedSuccessfully);
        Assert.True(budget.AcquireAsync(b, 32 * Mib, CancellationToken.None).IsCompletedSuccessfully);
        // Waiting on its own share only: a client's own backlog, nobody else is held up.
        _ = budget.AcquireAsync(a, 32 * Mib, CancellationToken.None);
        Assert.False(budget.IsContended);
        // A connection holding nothing waits for the budget: the others' unread replies are in its way.
        _ = budget.AcquireAsync(new BufferAccount(), 4096, CancellationToken.None);
        Assert.True(budget.IsContended);
    }

    [Fact]
    public async Task A_request_larger_than_what_is_left_is_granted_once_nothing_is_held()
    {
        var budget = new BufferBudget(32 * Mib);
        var first = new BufferAccount();
        Assert.True(budget.AcquireAsync(first, 16 * Mib, CancellationToken.None).IsCompletedSuccessfully);
        var big = new BufferAccount();
        var waiting = budget.AcquireAsync(big, 32 * Mib, CancellationToken.None).AsTask();
        Assert.False(waiting.IsCompleted);
        budget.Release(first, 16 * Mib);
        await waiting.WaitAsync(TimeSpan.FromSeconds(5));
        Assert.Equal(32 * Mib, budget.Used);
    }

    [Fact]
    public async Task A_cancelled_wait_takes_nothing()
    {
        var budget = new BufferBudget(32 * Mib);
        var holder = new BufferAccount();
        Assert.True(budget.AcquireAsync(holder, 32 * Mib, CancellationToken.None).IsCompletedSuccessfully);
        using var stop = new CancellationTokenSource();
        var other = new BufferAccount();
        var waiting = budget.AcquireAsync(other, Mib, stop.Token).AsTask();
        stop.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => waiting);
        budget.Release(holder, 32 * Mib);
        Assert.Equal(0, budget.Used);
        Assert.Equal(0, other.Held);
    }

    [Fact]
    public void Large_buffers_are_reused_and_dropped_by_a_trim()
    {
        var pool = new PayloadBufferPool(retainLimit: 64 * Mib);
        var buffer = pool.Rent(3 * (int)Mib);
        Assert.Equal(4 * Mib, buffer.Capacity);
        pool.Return(buffer);
        Assert.Equal(4 * Mib, pool.Retained);
        Assert.Same(buffer.Array, pool.Rent(4 * (int)Mib).Array);
        pool.Return(buffer);
        Assert.True(pool.Trim());
        Assert.Equal(0, pool.Retained);
        Assert.False(pool.Trim()); // nothing made since: no second collection
    }

    [Theory]
    [InlineData(1)]
    [InlineData(512)]
    [InlineData(4096)]
    [InlineData(65536)]
    [InlineData(200_000)]
    [InlineData(32 << 20)]
    public unsafe void Buffers_start_on_a_page_boundary_and_small_ones_are_reused(int length)
    {
        var pool = new PayloadBufferPool(retainLimit: 64 * Mib);
        var buffer = pool.Rent(length);
        Assert.True(buffer.Capacity >= length);
        fixed (byte* start = buffer.Span(length))
        {
            Assert.Equal(0, (long)start % PayloadBufferPool.Alignment);
        }
        pool.Return(buffer);
        var again = pool.Rent(length);
        Assert.Same(buffer.Array, again.Array);
        Assert.Equal(buffer.Start, again.Start);
    }

    [Fact]
    public void Renting_and_returning_warm_buffers_allocates_nothing()
    {
        var pool = new PayloadBufferPool(retainLimit: 64 * Mib);
        int[] lengths = [4096, 512, 65536, 1 << 20];
        foreach (var length in lengths) pool.Return(pool.Rent(length));
        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 1000; i++)
        {
            pool.Return(pool.Rent(lengths[i % lengths.Length]));
        }
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }
}
