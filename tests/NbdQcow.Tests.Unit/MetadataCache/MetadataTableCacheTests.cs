using NbdQcow.Cache.Metadata;

namespace NbdQcow.Tests.Unit.MetadataCache;

public sealed class MetadataTableCacheTests
{
    private const int Size = 4096;

    private static void Fill(MetadataTableLease lease, byte value) => lease.Data.Fill(value);

    [Fact]
    public void Get_loads_table_content_from_the_file_once()
    {
        var file = new RecordingMemoryHostFile();
        file.Write(Size * 3, Enumerable.Repeat((byte)7, Size).ToArray());
        using var cache = new MetadataTableCache(file, Size);
        using (var lease = cache.Get(Size * 3)) Assert.All(lease.Data.ToArray(), b => Assert.Equal(7, b));
        using (var lease = cache.Get(Size * 3)) Assert.Equal(7, lease.Data[100]);
        Assert.Equal(1, file.Reads);
    }

    [Fact]
    public void GetNew_does_not_read_and_writes_zeroes_at_flush()
    {
        var file = new RecordingMemoryHostFile();
        file.Write(Size, Enumerable.Repeat((byte)9, Size).ToArray());
        using var cache = new MetadataTableCache(file, Size);
        using (var lease = cache.GetNew(Size)) Assert.Equal(0, lease.Data[0]);
        Assert.Equal(0, file.Reads);
        cache.FlushToDisk();
        Assert.All(file.DurableBytes(Size, Size), b => Assert.Equal(0, b));
    }

    [Fact]
    public void Table_marked_after_earlier_writes_is_written_only_after_a_barrier()
    {
        var file = new RecordingMemoryHostFile();
        using var cache = new MetadataTableCache(file, Size);
        file.Write(Size * 10, new byte[Size]); // the data cluster
        file.ClearLog();
        using (var l2 = cache.Get(Size * 2)) { Fill(l2, 1); cache.MarkDirtyAfterEarlierWrites(l2.Table); }
        cache.FlushToDisk();
        Assert.Equal(["F", $"W {Size * 2} {Size}", "F"], file.Log);
    }

    [Fact]
    public void Dependency_chain_refcount_then_l2_then_l1_has_a_barrier_between_each_level()
    {
        var file = new RecordingMemoryHostFile();
        using var cache = new MetadataTableCache(file, Size);
        using (var refblock = cache.Get(Size * 5))
        using (var l2 = cache.Get(Size * 6))
        using (var l1 = cache.Get(Size * 1))
        {
            cache.AddDependency(refblock.Table, l2.Table);
            cache.AddDependency(l2.Table, l1.Table);
            Fill(refblock, 1); cache.MarkDirty(refblock.Table);
            Fill(l2, 2); cache.MarkDirty(l2.Table);
            Fill(l1, 3); cache.MarkDirty(l1.Table);
        }
        file.ClearLog();
        cache.FlushToDisk();
        Assert.Equal([$"W {Size * 5} {Size}", "F", $"W {Size * 6} {Size}", "F", $"W {Size} {Size}", "F"], file.Log);
    }

    [Fact]
    public void Independent_adjacent_tables_are_coalesced_into_one_write_without_inner_barriers()
    {
        var file = new RecordingMemoryHostFile();
        using var cache = new MetadataTableCache(file, Size);
        foreach (var index in new[] { 8, 6, 7, 12 })
            using (var lease = cache.Get(Size * index)) { Fill(lease, (byte)index); cache.MarkDirty(lease.Table); }
        file.ClearLog();
        cache.FlushToDisk();
        Assert.Equal([$"W {Size * 6} {Size * 3}", $"W {Size * 12} {Size}", "F"], file.Log);
        Assert.Equal(7, file.DurableBytes(Size * 7, Size)[0]);
        Assert.Equal(12, file.DurableBytes(Size * 12, Size)[Size - 1]);
    }

    [Fact]
    public void Dependency_already_durable_needs_no_extra_barrier()
    {
        var file = new RecordingMemoryHostFile();
        using var cache = new MetadataTableCache(file, Size);
        using var refblock = cache.Get(Size * 5);
        Fill(refblock, 1); cache.MarkDirty(refblock.Table);
        cache.FlushToDisk();
        Assert.True(cache.IsDurable(refblock.Table));
        using (var l2 = cache.Get(Size * 6))
        {
            cache.AddDependency(refblock.Table, l2.Table);
            Fill(l2, 2); cache.MarkDirty(l2.Table);
        }
        file.ClearLog();
        cache.FlushToDisk();
        Assert.Equal([$"W {Size * 6} {Size}", "F"], file.Log);
    }

    [Fact]
    public void FlushToOs_writes_every_dirty_table_without_any_barrier()
    {
        var file = new RecordingMemoryHostFile();
        using var cache = new MetadataTableCache(file, Size);
        using (var a = cache.Get(Size * 5))
        using (var b = cache.Get(Size * 9))
        {
            cache.AddDependency(a.Table, b.Table);
            Fill(a, 1); cache.MarkDirtyAfterEarlierWrites(a.Table);
            Fill(b, 2); cache.MarkDirty(b.Table);
        }
        file.ClearLog();
        cache.FlushToOs();
        Assert.Equal([$"W {Size * 5} {Size}", $"W {Size * 9} {Size}"], file.Log);
        Assert.Equal(0, cache.DirtyCount);
        Assert.Equal(0, file.DurableBytes(Size * 9, 1)[0]);
        // A later flush to disk still syncs what flush-to-OS wrote.
        cache.FlushToDisk();
        Assert.Equal(2, file.DurableBytes(Size * 9, 1)[0]);
    }

    [Fact]
    public void FlushSafeToOs_writes_only_tables_whose_prerequisites_are_durable_and_never_syncs()
    {
        var file = new RecordingMemoryHostFile();
        using var cache = new MetadataTableCache(file, Size);
        using (var refblock = cache.Get(Size * 5))
        using (var l2WithDirtyDependency = cache.Get(Size * 6))
        using (var l2AfterData = cache.Get(Size * 7))
        using (var writtenNotDurable = cache.Get(Size * 11))
        using (var l2WithUnsyncedDependency = cache.Get(Size * 12))
        using (var independent = cache.Get(Size * 20))
        {
            // A dependency written to the OS but not yet covered by a barrier.
            Fill(writtenNotDurable, 4); cache.MarkDirty(writtenNotDurable.Table);
            cache.FlushToOs();
            cache.AddDependency(writtenNotDurable.Table, l2WithUnsyncedDependency.Table);
            Fill(l2WithUnsyncedDependency, 5); cache.MarkDirty(l2WithUnsyncedDependency.Table);

            cache.AddDependency(refblock.Table, l2WithDirtyDependency.Table);
            Fill(refblock, 1); cache.MarkDirty(refblock.Table);
            Fill(l2WithDirtyDependency, 2); cache.MarkDirty(l2WithDirtyDependency.Table);
            file.Write(Size * 30, new byte[Size]); // a data cluster the next table maps
            Fill(l2AfterData, 3); cache.MarkDirtyAfterEarlierWrites(l2AfterData.Table);
            Fill(independent, 6); cache.MarkDirty(independent.Table);
        }
        file.ClearLog();

        var waiting = cache.FlushSafeToOs();

        // Only tables with nothing to wait for: the refcount block and the independent table, no barrier.
        Assert.Equal([$"W {Size * 5} {Size}", $"W {Size * 20} {Size}"], file.Log);
        Assert.Equal(3, waiting);
        Assert.Equal(3, cache.DirtyCount);
        // The refcount block just written is not durable: its L2 table must still wait for a barrier.
        file.ClearLog();
        Assert.Equal(3, cache.FlushSafeToOs());
        Assert.Empty(file.Log);
        // After a barrier every prerequisite is durable and the rest may go to the OS.
        cache.Barrier();
        file.ClearLog();
        Assert.Equal(0, cache.FlushSafeToOs());
        Assert.Equal([$"W {Size * 6} {Size * 2}", $"W {Size * 12} {Size}"], file.Log);
    }

    [Fact]
    public void Evicting_a_dirty_table_first_makes_its_dependency_durable()
    {
        var file = new RecordingMemoryHostFile();
        using var cache = new MetadataTableCache(file, Size, capacityBytes: 16 * Size);
        using (var refblock = cache.Get(Size * 100))
        using (var l2 = cache.Get(Size * 200))
        {
            cache.AddDependency(refblock.Table, l2.Table);
            Fill(refblock, 1); cache.MarkDirty(refblock.Table);
            Fill(l2, 2); cache.MarkDirty(l2.Table);
        }
        // Touch the refcount block so the L2 table is the least recently used.
        using (cache.Get(Size * 100)) { }
        file.ClearLog();
        // Only dirty tables to choose from: the least recently used one (the L2 table) is evicted first.
        for (var i = 0; i < 15; i++) using (var lease = cache.Get(Size * (300 + i))) cache.MarkDirty(lease.Table);
        Assert.Equal([$"W {Size * 100} {Size}", "F", $"W {Size * 200} {Size}"], file.Log);
        Assert.Equal(1, file.DurableBytes(Size * 100, 1)[0]);
        Assert.True(cache.CachedCount <= 16);
        Assert.Equal(1, cache.Statistics.Evictions);
    }

    [Fact]
    public void Cache_stays_within_capacity_and_rereads_evicted_tables_with_their_content()
    {
        var file = new RecordingMemoryHostFile();
        using var cache = new MetadataTableCache(file, Size, capacityBytes: 16 * Size);
        for (var i = 0; i < 100; i++)
            using (var lease = cache.Get(Size * i)) { lease.Data[0] = (byte)i; cache.MarkDirty(lease.Table); }
        Assert.True(cache.CachedCount <= 16);
        for (var i = 0; i < 100; i++)
            using (var lease = cache.Get(Size * i)) Assert.Equal((byte)i, lease.Data[0]);
    }

    [Fact]
    public void Contradicting_dependency_flushes_the_earlier_table_instead_of_making_a_cycle()
    {
        var file = new RecordingMemoryHostFile();
        using var cache = new MetadataTableCache(file, Size);
        using var a = cache.Get(Size * 1);
        using var b = cache.Get(Size * 2);
        cache.AddDependency(a.Table, b.Table);
        Fill(a, 1); cache.MarkDirty(a.Table);
        Fill(b, 2); cache.MarkDirty(b.Table);
        file.ClearLog();
        cache.AddDependency(b.Table, a.Table); // b before a now: b (after a) is flushed at once
        Assert.Equal([$"W {Size} {Size}", "F", $"W {Size * 2} {Size}", "F"], file.Log);
        Assert.True(cache.IsDurable(b.Table));
        Fill(a, 3); cache.MarkDirty(a.Table);
        file.ClearLog();
        cache.FlushToDisk();
        Assert.Equal([$"W {Size} {Size}", "F"], file.Log);
    }

    [Fact]
    public void Discarded_table_is_not_written_and_pinned_table_cannot_be_discarded()
    {
        var file = new RecordingMemoryHostFile();
        using var cache = new MetadataTableCache(file, Size);
        using (var lease = cache.Get(Size * 4))
        {
            Fill(lease, 5); cache.MarkDirty(lease.Table);
            Assert.Throws<InvalidOperationException>(() => cache.Discard(Size * 4));
        }
        cache.Discard(Size * 4);
        file.ClearLog();
        cache.FlushToDisk();
        Assert.Equal(["F"], file.Log);
    }

    [Fact]
    public void Oldest_dirty_timestamp_tracks_the_first_unflushed_change()
    {
        var file = new RecordingMemoryHostFile();
        using var cache = new MetadataTableCache(file, Size);
        Assert.Null(cache.OldestDirtyTimestamp);
        var before = System.Diagnostics.Stopwatch.GetTimestamp();
        using (var lease = cache.Get(0)) cache.MarkDirty(lease.Table);
        Assert.True(cache.OldestDirtyTimestamp >= before);
        cache.FlushToOs();
        Assert.Null(cache.OldestDirtyTimestamp);
    }

    [Fact]
    public void Changing_an_unpinned_table_is_refused()
    {
        var file = new RecordingMemoryHostFile();
        using var cache = new MetadataTableCache(file, Size);
        MetadataTable table;
        using (var lease = cache.Get(0)) table = lease.Table;
        Assert.Throws<InvalidOperationException>(() => cache.MarkDirty(table));
    }

    [Fact]
    public void Concurrent_users_with_a_small_cache_never_lose_an_update()
    {
        var file = new RecordingMemoryHostFile();
        using var cache = new MetadataTableCache(file, 512, capacityBytes: 16 * 512);
        var gate = new object();
        Parallel.For(0, 8, worker =>
        {
            var random = new Random(worker);
            for (var i = 0; i < 2000; i++)
            {
                var index = random.Next(64);
                using var lease = cache.Get(512L * index);
                lock (gate) // the image's metadata lock
                {
                    lease.Data[worker]++;
                    cache.MarkDirty(lease.Table);
                }
                if (i % 500 == 0) cache.FlushToDisk();
            }
        });
        cache.FlushToDisk();
        var counts = new int[8];
        for (var index = 0; index < 64; index++)
        {
            var bytes = file.DurableBytes(512L * index, 512);
            for (var w = 0; w < 8; w++) counts[w] += bytes[w];
        }
        // Each worker made 2000 increments of one byte spread over 64 tables (mod 256 per table).
        var expected = new int[8];
        for (var w = 0; w < 8; w++)
        {
            var random = new Random(w);
            var perTable = new int[64];
            for (var i = 0; i < 2000; i++) perTable[random.Next(64)]++;
            foreach (var n in perTable) expected[w] += n % 256;
        }
        Assert.Equal(expected, counts);
    }
}
