using NbdQcow.Server.Nbd;

namespace NbdQcow.Tests.Unit.Server;

/// <summary>
/// Grants of the server-wide payload budget are first come, first served once anyone waits: small requests cannot
/// starve a large one, the cap is never exceeded, and every waiter is served once the holders let go.
/// </summary>
public sealed class BufferBudgetFairnessTests
{
    private const long Mib = 1024 * 1024;

    [Fact]
    public async Task Small_requests_do_not_pass_a_large_one_waiting_before_them()
    {
        var budget = new BufferBudget(64 * Mib); // 32 MiB per connection
        var holder = new BufferAccount();
        Assert.True(budget.AcquireAsync(holder, 16 * Mib, CancellationToken.None).IsCompletedSuccessfully);
        Assert.True(budget.AcquireAsync(new BufferAccount(), 16 * Mib, CancellationToken.None).IsCompletedSuccessfully);
        var heldBySmall = new BufferAccount();
        Assert.True(budget.AcquireAsync(heldBySmall, 8 * Mib, CancellationToken.None).IsCompletedSuccessfully);

        // 40 MiB used: a 32 MiB request waits.
        var large = new BufferAccount();
        var largeWait = budget.AcquireAsync(large, 32 * Mib, CancellationToken.None).AsTask();
        Assert.False(largeWait.IsCompleted);

        // A 1 MiB request fits the room left, but it came later: it queues behind the large one.
        var small = new BufferAccount();
        var smallWait = budget.AcquireAsync(small, Mib, CancellationToken.None).AsTask();
        Assert.False(smallWait.IsCompleted, "a small request was granted past a larger one waiting before it");

        // The holder releases: now the large one fits (24 MiB used + 32), and the small one after it (57 MiB).
        budget.Release(holder, 16 * Mib);
        await largeWait.WaitAsync(TimeSpan.FromSeconds(5));
        await smallWait.WaitAsync(TimeSpan.FromSeconds(5));
        Assert.Equal(57 * Mib, budget.Used);
    }

    [Fact]
    public async Task A_request_waiting_only_for_its_own_share_does_not_hold_up_others()
    {
        var budget = new BufferBudget(128 * Mib); // 32 MiB per connection
        var greedy = new BufferAccount();
        Assert.True(budget.AcquireAsync(greedy, 32 * Mib, CancellationToken.None).IsCompletedSuccessfully);
        var overShare = budget.AcquireAsync(greedy, Mib, CancellationToken.None).AsTask();
        Assert.False(overShare.IsCompleted);
        Assert.False(budget.IsContended);

        Assert.True(budget.AcquireAsync(new BufferAccount(), 32 * Mib, CancellationToken.None).IsCompletedSuccessfully);
        budget.Release(greedy, 32 * Mib);
        await overShare.WaitAsync(TimeSpan.FromSeconds(5));
        Assert.Equal(33 * Mib, budget.Used);
    }

    [Fact]
    public async Task A_cancelled_waiter_at_the_head_lets_the_ones_behind_it_through()
    {
        var budget = new BufferBudget(64 * Mib);
        var holder = new BufferAccount();
        Assert.True(budget.AcquireAsync(holder, 32 * Mib, CancellationToken.None).IsCompletedSuccessfully);
        Assert.True(budget.AcquireAsync(new BufferAccount(), 8 * Mib, CancellationToken.None).IsCompletedSuccessfully);
        using var stop = new CancellationTokenSource();
        var head = budget.AcquireAsync(new BufferAccount(), 32 * Mib, stop.Token).AsTask();
        var behind = budget.AcquireAsync(new BufferAccount(), Mib, CancellationToken.None).AsTask();
        Assert.False(behind.IsCompleted);
        stop.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => head);
        await behind.WaitAsync(TimeSpan.FromSeconds(5));
        Assert.Equal(41 * Mib, budget.Used);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    [InlineData(5)]
    public void Random_grants_and_releases_never_exceed_the_cap_and_serve_every_waiter(int seed)
    {
        var random = new Random(seed);
        var capacity = (32 + random.Next(0, 5) * 16) * Mib;
        var budget = new BufferBudget(capacity);
        var accounts = new BufferAccount[6];
        for (var i = 0; i < accounts.Length; i++)
        {
            accounts[i] = new BufferAccount();
        }
        // Each connection waits for one request at a time, as the receive loop does; granted requests are held
        // until a random release.
        var pending = new (Task Wait, long Bytes)?[accounts.Length];
        var held = new List<(int Account, long Bytes)>();

        void Collect()
        {
            for (var a = 0; a < accounts.Length; a++)
            {
                if (pending[a] is { } p && p.Wait.IsCompletedSuccessfully)
                {
                    held.Add((a, p.Bytes));
                    pending[a] = null;
                }
            }
            Assert.True(budget.Used <= capacity, $"{budget.Used} bytes granted, capacity {capacity}");
            long sum = 0;
            foreach (var (_, bytes) in held)
            {
                sum += bytes;
            }
            Assert.Equal(sum, budget.Used);
        }

        for (var step = 0; step < 2000; step++)
        {
            var a = random.Next(accounts.Length);
            if (random.Next(3) != 0 && pending[a] is null)
            {
                long bytes = random.Next(4) switch
                {
                    0 => 4096,
                    1 => Mib,
                    2 => 4 * Mib,
                    _ => 32 * Mib,
                };
                var wait = budget.AcquireAsync(accounts[a], bytes, CancellationToken.None).AsTask();
                pending[a] = (wait, bytes);
            }
            else if (held.Count > 0)
            {
                var i = random.Next(held.Count);
                var (owner, bytes) = held[i];
                held.RemoveAt(i);
                budget.Release(accounts[owner], bytes);
            }
            Collect();
        }

        // Let every holder go: every waiter must be served, one after another, and the budget ends empty.
        for (var round = 0; round < 1000 && (held.Count > 0 || Array.Exists(pending, p => p is not null)); round++)
        {
            if (held.Count > 0)
            {
                var (owner, bytes) = held[0];
                held.RemoveAt(0);
                budget.Release(accounts[owner], bytes);
            }
            Collect();
        }
        Assert.All(pending, p => Assert.Null(p));
        Assert.Empty(held);
        Assert.Equal(0, budget.Used);
    }
}
