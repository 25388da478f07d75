using System.Buffers;
using System.Buffers.Binary;
using NbdQcow.Cache;
using NbdQcow.Cache.Metadata;
using NbdQcow.HostIo;
using NbdQcow.Image.Qcow2.Format;
using NbdQcow.Image.Qcow2.Refcounts;

namespace NbdQcow.Image.Qcow2;

// The write path: allocation, copy-on-write, zero/trim, cache modes and ordered flushing.
// Order of a flush (MetadataTableCache does it from the dependencies recorded here):
//   data clusters + refcount blocks -> barrier -> refcount table (new blocks only) -> barrier -> L2 tables
//   -> barrier -> L1 table -> barrier. Freed clusters get their refcount dropped only after the L2/L1 change
//   that dropped the reference is durable, and in-place data I/O that may still target them has drained.
public sealed partial class Qcow2Image : IUnflushedChangesSource, ICacheModeTarget
{
    private MetadataTableCache? _metadataCache;
    private Qcow2MetadataMap? _metadataMap;
    private Qcow2Refcounts? _refcounts;
    /// <summary>What the cache mode asks of changes and flushes; null until the image is open for writing.</summary>
    private CacheModeLayer? _cacheMode;
    private readonly Qcow2DataAccessGuard _dataGuard = new();
    /// <summary>Guest clusters whose mapping is being changed (allocation in progress), by guest cluster index.</summary>
    private readonly Dictionary<long, TaskCompletionSource> _inflight = new();
    private bool _writeReady;
    private static byte[]? s_zeroCluster;

    /// <summary>Called after each completed guest write/zero/trim (persistent dirty bitmaps hook).</summary>
    partial void OnGuestWrite(long offset, long length);

    /// <summary>Metadata tables (L2, refcount blocks, L1 and refcount table clusters) of this image, bounded.</summary>
    internal MetadataTableCache MetadataCache =>
        _metadataCache ?? Interlocked.CompareExchange(ref _metadataCache, new MetadataTableCache(File, Geometry.ClusterSize, MetadataCacheBytes()), null) ?? _metadataCache!;

    internal Qcow2Refcounts Refcounts => _refcounts ?? throw new InvalidOperationException("image is not open for writing");

    internal Qcow2MetadataMap MetadataMap => _metadataMap ?? throw new InvalidOperationException("image is not open for writing");

    /// <summary>The max-dirty-age policy, or null when off or not applicable.</summary>
    public DirtyAgeFlusher? DirtyAgePolicy => _cacheMode?.DirtyAge;

    /// <inheritdoc />
    public UnflushedChanges? UnflushedChanges => _cacheMode?.Unflushed;

    private CacheModeLayer CacheModeLayer => _cacheMode ?? throw new InvalidOperationException("image is not open for writing");

    private long MetadataCacheBytes() => Options.MetadataCacheBytes ?? MetadataTableCache.DefaultCapacityBytes;

    /// <summary>Features of a writable image (used when <see cref="IsReadOnly"/> is false).</summary>
    private BlockDeviceFeatures WritableFeatures => CacheModeFeatures.Writable(Options.CacheMode) | BlockDeviceFeatures.FastZero;

    /// <summary>Called at the end of a read-write open, after header, L1, backing and bitmaps are loaded.</summary>
    private void InitializeWriting()
    {
        if (Header.Version < 3 && Geometry.ExtendedL2)
            throw new Qcow2FormatException("version", Header.Version, "extended L2 needs version 3");
        if ((Header.IncompatibleFeatures & Qcow2IncompatibleFeatures.Dirty) != 0)
            RebuildRefcountsAfterUncleanShutdown();
        var map = new Qcow2MetadataMap(Geometry.ClusterBits);
        map.Add(0, Geometry.ClusterSize);
        map.Add((long)Header.L1TableOffset, Header.L1Size * 8L);
        if (EncryptionArea is { } luks) map.Add(luks.Offset, luks.Length);
        if (Header.SnapshotCount > 0)
        {
            map.Add((long)Header.SnapshotsOffset, Math.Max(Qcow2SnapshotTable.SizeOf(Snapshots), 1));
            foreach (var snapshot in Snapshots)
                map.Add((long)snapshot.L1TableOffset, snapshot.L1Size * 8L);
        }
        if (Header.Bitmaps is { } bitmaps && (Header.AutoclearFeatures & Qcow2AutoclearFeatures.Bitmaps) != 0)
        {
            map.Add((long)bitmaps.DirectoryOffset, (long)bitmaps.DirectorySize);
            foreach (var bitmap in BitmapDirectory)
                map.Add((long)bitmap.BitmapTableOffset, bitmap.BitmapTableSize * 8L);
        }
        foreach (ulong raw in L1Table)
        {
            long l2 = (long)(raw & L1Entry.OffsetMask);
            if (l2 != 0) map.Add(l2, Geometry.ClusterSize);
        }
        var cache = MetadataCache;
        bool unsafeWithoutBound = Options.CacheMode == CacheMode.Unsafe && Options.MaxDirtyAge is null;
        cache.EvictionUsesBarriers = !unsafeWithoutBound;
        _refcounts = new Qcow2Refcounts(File, cache, Header, map, problem => ReportDamage($"qcow2 image {Path}: {problem}"));
        _metadataMap = map;
        EnsureMetadataIsCounted();
        EnsureTablesDoNotOverlap();
        StartOwnershipChecks();
        ReserveTableSpace();
        if (Options.Journal) StartJournal(cache);
        _cacheMode = Options.CreateCacheModeLayer(this);
    }

    /// <summary>
    /// The dirty bit says refcounts may be stale (lazy refcounts and an unclean shutdown): rebuild them from the
    /// references before anything is allocated, as qemu does, then take the new refcount table and cleared bit.
    /// </summary>
    private void RebuildRefcountsAfterUncleanShutdown()
    {
        var result = Check.Qcow2Checker.Check(File, Check.Qcow2RepairMode.All);
        if (result.FatalError is not null || result.Corruptions > 0)
            throw new Qcow2FormatException("incompatible_features", "dirty bit (bit 0)",
                $"rebuilding refcounts after an unclean shutdown failed ({result.FatalError ?? $"{result.Corruptions} corruptions remain"}); check the image with: nbdqcow check {Path}");
        var rebuilt = Qcow2Header.Read(File);
        Header.RefcountTableOffset = rebuilt.RefcountTableOffset;
        Header.RefcountTableClusters = rebuilt.RefcountTableClusters;
        Header.IncompatibleFeatures = rebuilt.IncompatibleFeatures;
        if (Header.L1Size > 0) L1Table = BigEndianTable.Read(File, (long)Header.L1TableOffset, (int)Header.L1Size); // COPIED flags may have changed
    }

    /// <summary>Called by DisposeAsync on a writable image before files are closed: flush and mark clean.</summary>
    private async ValueTask CloseWritingAsync()
    {
        if (_cacheMode is not null)
            await _cacheMode.DisposeAsync().ConfigureAwait(false);
        // A clean close leaves everything on disk, whatever the mode, with every pending free applied (no leaks).
        await DurableFlushAsync().ConfigureAwait(false);
        await MetadataLock.WaitAsync().ConfigureAwait(false);
        try
        {
            // The refcount drops just applied; with a journal, the checkpoint that leaves it empty and the bit clear.
            if (_journalWriter is { } journal)
            {
                if (MetadataCache.DirtyCount > 0 || journal.HasUncheckpointedTables) journal.Checkpoint();
            }
            else if (MetadataCache.DirtyCount > 0) MetadataCache.FlushToDisk();
            TruncateFreeTail();
        }
        finally
        {
            MetadataLock.Release();
        }
        _metadataCache?.Dispose();
        _journal?.Dispose();
    }

    /// <summary>
    /// At a clean close, gives back the file's free tail (clusters past the last one with a refcount, left by trims
    /// and churn). Every free is durable by now, so nothing points there; a crash during the truncation loses nothing.
    /// Never on an image found damaged, and never below a metadata cluster, whatever the refcounts say.
    /// </summary>
    private void TruncateFreeTail()
    {
        if (_refcounts is not { PendingFreeCount: 0 } refcounts || _journalWriter is not null
            || (Header.IncompatibleFeatures & Qcow2IncompatibleFeatures.Corrupt) != 0) return;
        long usedClusters = Math.Max(refcounts.UsedEndCluster(), MetadataMap.LastCluster() + 1);
        long used = usedClusters << Geometry.ClusterBits;
        if (used <= 0 || used >= File.Length) return;
        File.SetLength(used);
        File.Flush();
    }

    // ---- Writes -------------------------------------------------------------------------------------------

    public async ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, bool fua, CancellationToken cancellationToken = default)
    {
        try
        {
            await EnsureWriteReadyAsync(cancellationToken).ConfigureAwait(false);
            long start = offset;
            int total = data.Length;
            while (data.Length > 0)
            {
                int n = await WriteRunAsync(offset, data, cancellationToken).ConfigureAwait(false);
                offset += n;
                data = data[n..];
            }
            await AfterChangeAsync(start, total, fua, cancellationToken).ConfigureAwait(false);
        }
        catch (IOException e)
        {
            throw HostIoErrors.ToBlockDeviceException(e);
        }
    }

    public async ValueTask ZeroAsync(long offset, long length, ZeroFlags flags, CancellationToken cancellationToken = default)
    {
        try
        {
            await EnsureWriteReadyAsync(cancellationToken).ConfigureAwait(false);
            long position = offset, end = offset + length;
            while (position < end)
            {
                long skip = UnmappedReadingZero(position, end);
                if (skip > 0) { position += skip; continue; }
                int n = (int)Math.Min(end - position, Geometry.BytesToClusterEnd(position));
                await ZeroClusterAsync(position, n, flags, cancellationToken).ConfigureAwait(false);
                position += n;
            }
            if (DataFileIsRaw) ZeroRawDataFile(offset, length);
            await AfterChangeAsync(offset, length, (flags & ZeroFlags.Fua) != 0, cancellationToken).ConfigureAwait(false);
        }
        catch (IOException e)
        {
            throw HostIoErrors.ToBlockDeviceException(e);
        }
    }

    public async ValueTask TrimAsync(long offset, long length, bool fua, CancellationToken cancellationToken = default)
    {
        try
        {
            await EnsureWriteReadyAsync(cancellationToken).ConfigureAwait(false);
            long position = offset, end = offset + length;
            while (position < end)
            {
                long skip = UnmappedReadingZero(position, end);
                if (skip > 0) { position += skip; continue; }
                int n = (int)Math.Min(end - position, Geometry.BytesToClusterEnd(position));
                // A trim is a hint: only whole clusters are released, partial ones keep their data.
                if (n == Geometry.ClusterSize)
                    await ChangeWholeClusterAsync(position, Qcow2ClusterChange.Trim, cancellationToken).ConfigureAwait(false);
                position += n;
            }
            if (DataFileIsRaw)
            {
                // Keep the raw data file equal to the guest view: only whole clusters were released.
                long first = (offset + Geometry.ClusterSize - 1) & ~Geometry.ClusterOffsetMask;
                long last = (offset + length) & ~Geometry.ClusterOffsetMask;
                if (last > first) ZeroRawDataFile(first, last - first);
            }
            await AfterChangeAsync(offset, length, fua, cancellationToken).ConfigureAwait(false);
        }
        catch (IOException e)
        {
            throw HostIoErrors.ToBlockDeviceException(e);
        }
    }

    /// <summary>An external data file flagged data_file_raw must stay a valid raw image of the guest disk.</summary>
    private bool DataFileIsRaw => UsesExternalDataFile && (Header.AutoclearFeatures & Qcow2AutoclearFeatures.DataFileRaw) != 0;

    private void ZeroRawDataFile(long offset, long length)
    {
        if (DataFile.TryZeroRange(offset, length)) return;
        var zeroes = s_zeroCluster ??= new byte[1 << Qcow2Header.MaxClusterBits];
        for (long done = 0; done < length;)
        {
            int n = (int)Math.Min(length - done, zeroes.Length);
            DataFile.Write(offset + done, zeroes.AsSpan(0, n));
            done += n;
        }
    }

    public async ValueTask FlushAsync(CancellationToken cancellationToken = default)
    {
        if (IsReadOnly) return;
        try
        {
            await CacheModeLayer.FlushAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (IOException e)
        {
            throw HostIoErrors.ToBlockDeviceException(e);
        }
    }

    /// <summary>
    /// Ordered flush to disk, coalesced with others (<see cref="CacheModeLayer.DurableFlushAsync()"/>): every change
    /// completed before the call is durable afterwards, and the frees it made safe are applied.
    /// </summary>
    internal ValueTask DurableFlushAsync() => CacheModeLayer.DurableFlushAsync();

    bool ICacheModeTarget.HasUnflushedState => MetadataCache.DirtyCount > 0 || _refcounts is { PendingFreeCount: > 0 };

    // Overwrites of allocated clusters leave nothing but the final fdatasync, which is asynchronous.
    bool ICacheModeTarget.FlushBlocksThread =>
        _journalWriter is not null || MetadataCache.DirtyCount > 0 || _refcounts is { PendingFreeCount: > 0 };

    // Asked at each FLUSH: Open replaces the latch after InitializeWriting (one latch for every file of the image).
    IOException? ICacheModeTarget.SyncRefusal() => SyncFailures.RefusalFor(Path);

    /// <summary>
    /// The ordered flush (the layer runs one at a time): tables in dependency order with barriers, the final
    /// fdatasync without the metadata lock, then the frees whose dropping table is durable are applied (after
    /// in-place I/O that may target those clusters has drained).
    /// </summary>
    async ValueTask ICacheModeTarget.FlushToDiskAsync()
    {
        var journal = _journalWriter;
        long epoch = 0, freesCovered = 0;
        // Tables made dirty since the layer asked: their writes and barriers are synchronous, not for the completion thread.
        if (IoCompletionThread.IsCurrent && (journal is not null || MetadataCache.DirtyCount > 0)) await Task.Yield();
        await MetadataLock.WaitAsync().ConfigureAwait(false);
        try
        {
            // Every free recorded so far changed a table this flush writes (or one written before): all covered.
            freesCovered = _refcounts?.FreeSequenceMark ?? 0;
            if (journal is not null) journal.Commit(); // one journal commit (a checkpoint past the journal's bound)
            else epoch = MetadataCache.WriteTablesForDisk();
        }
        finally
        {
            MetadataLock.Release();
        }
        // The final fdatasync runs without the metadata lock: in-place writes and lookups go on meanwhile. It is
        // submitted now, after every write this flush covers has completed; with io_uring no thread waits in it.
        if (journal is null) await MetadataCache.SyncEpochAsync(epoch).ConfigureAwait(false);
        if (_refcounts is { PendingFreeCount: > 0 } refcounts)
        {
            // The ring's FSYNC completes on the completion thread, where WaitForEarlier would wait for itself.
            if (IoCompletionThread.IsCurrent) await Task.Yield();
            await MetadataLock.WaitAsync().ConfigureAwait(false);
            try
            {
                _dataGuard.WaitForEarlier();
                // The refcount drops are written at the next flush; a crash before that only leaks.
                refcounts.ApplyDurableFrees(freesCovered);
                // A freed table cluster with a live journal image: replay would overwrite its next use. Checkpoint first.
                if (journal is { NeedsCheckpointBeforeReuse: true }) journal.Checkpoint();
            }
            finally
            {
                MetadataLock.Release();
            }
        }
    }

    private async ValueTask AfterChangeAsync(long offset, long length, bool fua, CancellationToken cancellationToken)
    {
        OnGuestWrite(offset, length);
        var layer = CacheModeLayer;
        await layer.AfterChangeAsync(length, fua, cancellationToken).ConfigureAwait(false);
        if (!layer.SyncsAfterChange(fua)) await ReclaimPendingFreesAsync().ConfigureAwait(false);
    }

    /// <summary>Pending frees that make the max-dirty-age flusher (or, without it, this request) flush early.</summary>
    private const long PendingFreeFlushBytes = 32L << 20;

    private Func<bool>? _pendingFreesNeedFlush;

    private bool PendingFreesNeedFlush() => (_refcounts?.PendingFreeBytes ?? 0) >= PendingFreeFlushBytes;

    /// <summary>
    /// Freed clusters are reused only after a durable flush, so a client that trims and rewrites without flushing
    /// would grow the file without bound. Past <see cref="PendingFreeFlushBytes"/> waiting, an ordered flush runs:
    /// in the background when the max-dirty-age flusher exists, else in this request (all modes, unsafe included:
    /// one fdatasync per that many freed bytes). Past four times that, the request waits for it in any case, so the
    /// file grows by at most that much beyond what the guest holds, however fast the churn.
    /// The change that triggered it is complete and asked for no durability (FUA and write-through modes flushed
    /// before getting here), so a failure of this flush is the image's, not the request's: it goes where background
    /// flush failures go (a failed fdatasync also latches: every later FLUSH fails and the image is marked dirty),
    /// and the request succeeds. The frees stay pending and the next change tries again.
    /// </summary>
    private async ValueTask ReclaimPendingFreesAsync()
    {
        long pending = _refcounts?.PendingFreeBytes ?? 0;
        if (pending < PendingFreeFlushBytes) return;
        // After a failed fdatasync no flush succeeds until the image is reopened: trying on every change would
        // only repeat the same report.
        if (SyncFailures.HasFailed) return;
        if (pending < 4 * PendingFreeFlushBytes && CacheModeLayer.RequestBackgroundFlush()) return;
        try
        {
            // Skipped when, once this flush's turn comes, another flush has already made the frees reusable.
            await CacheModeLayer.DurableFlushAsync(_pendingFreesNeedFlush ??= PendingFreesNeedFlush).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or BlockDeviceException)
        {
            Options.BackgroundError?.Invoke(e);
        }
    }

    /// <summary>
    /// A client FLUSH or FUA in unsafe mode: acknowledged at once, never synced on request. Tables go to the OS so
    /// the image survives a crash of this process. With max dirty age off nothing is promised for a host crash, so
    /// every dirty table is written (in dependency order, no barriers). With it on, the image must stay consistent
    /// after a host crash, and a table written to the OS before what it depends on is durable may reach the disk
    /// first (the host writes back the page cache in any order): an L2 entry without its refcount or past the end
    /// of the file. So only the tables whose prerequisites are already durable are written now, and the max-dirty-
    /// age policy runs its ordered flush (with barriers) at once in the background for the rest, which reach the
    /// OS and the disk milliseconds later — the client's flush still waits for no fdatasync. The price: a process
    /// kill within those milliseconds loses the mappings still waiting (the image stays consistent); closing the
    /// gap entirely would need the fdatasync on the client's flush, which is what writeback mode is for.
    /// </summary>
    async ValueTask<bool> ICacheModeTarget.FlushToOsAsync(bool orderedFlushFollows, CancellationToken cancellationToken)
    {
        await MetadataLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (!orderedFlushFollows)
            {
                MetadataCache.FlushToOs();
                return false;
            }
            return MetadataCache.FlushSafeToOs() > 0;
        }
        finally
        {
            MetadataLock.Release();
        }
    }

    /// <summary>Once per open, before the first change: refuse corrupt images, clear unknown autoclear bits.</summary>
    private async ValueTask EnsureWriteReadyAsync(CancellationToken cancellationToken)
    {
        if (IsReadOnly) throw ReadOnlyError();
        if (Volatile.Read(ref _writeReady)) return;
        await MetadataLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (_writeReady) return;
            if ((Header.IncompatibleFeatures & Qcow2IncompatibleFeatures.Corrupt) != 0)
                throw new BlockDeviceException(BlockError.Io, $"qcow2 image {Path} is marked corrupt; refusing to write");
            var unknown = Header.AutoclearFeatures & ~Qcow2Header.KnownAutoclearFeatures;
            if (Header.Version >= 3 && unknown != 0)
            {
                // Bits a writer does not know must be cleared so their owner knows its data may be stale.
                var cleared = Header.AutoclearFeatures & Qcow2Header.KnownAutoclearFeatures;
                WriteHeaderField(88, (ulong)cleared);
                MetadataCache.Barrier();
                Header.AutoclearFeatures = cleared;
            }
            Volatile.Write(ref _writeReady, true);
        }
        finally
        {
            MetadataLock.Release();
        }
    }

    /// <summary>Writes an 8-byte big-endian header field in place (one sector: atomic under the crash model).</summary>
    private void WriteHeaderField(int offset, ulong value)
    {
        Span<byte> bytes = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64BigEndian(bytes, value);
        File.Write(offset, bytes);
        MetadataCache.NoteHostWrite();
    }

    /// <summary>
    /// Writes the start of <paramref name="data"/> at <paramref name="offset"/>: a run of clusters writable in place
    /// (COPIED, fully allocated) in one host write, or one cluster through allocation. Returns the bytes written.
    /// </summary>
    private async ValueTask<int> WriteRunAsync(long offset, ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
    {
        var g = Geometry;
        int inCluster = g.OffsetInCluster(offset);
        int firstChunk = Math.Min(data.Length, g.ClusterSize - inCluster);
        while (true)
        {
            Task? wait = null;
            TaskCompletionSource? mine = null;
            long inPlaceHost = -1;
            int inPlaceLength = 0, token = 0;
            L2Entry oldEntry = default;
            long allocated = 0;
            bool newHost = false;
            await MetadataLock.WaitAsync(cancellationToken).ConfigureAwait(false);
            try
            {
                long guestCluster = offset >> g.ClusterBits;
                if (_inflight.TryGetValue(guestCluster, out var busy))
                {
                    wait = busy.Task;
                }
                else
                {
                    (inPlaceHost, inPlaceLength) = FindInPlaceRun(offset, data.Length);
                    if (inPlaceLength > 0)
                    {
                        token = _dataGuard.Enter();
                    }
                    else
                    {
                        oldEntry = ReadL2Entry(offset);
                        CheckEntryTarget(oldEntry, offset, forChange: true); // its data is read, its cluster reused or freed
                        mine = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                        _inflight.Add(guestCluster, mine);
                        try
                        {
                            (allocated, newHost) = ChooseHostCluster(offset, oldEntry);
                        }
                        catch
                        {
                            _inflight.Remove(guestCluster);
                            mine.SetResult();
                            throw;
                        }
                    }
                }
            }
            finally
            {
                MetadataLock.Release();
            }

            if (wait is not null)
            {
                await wait.WaitAsync(cancellationToken).ConfigureAwait(false);
                continue;
            }
            if (inPlaceLength > 0)
            {
                try
                {
                    CheckDataWrite(inPlaceHost, inPlaceLength);
                    await DataFile.WriteAsync(inPlaceHost, data[..inPlaceLength]).ConfigureAwait(false);
                }
                finally
                {
                    _dataGuard.Exit(token);
                }
                return inPlaceLength;
            }
            await AllocatingWriteAsync(offset, data[..firstChunk], oldEntry, allocated, newHost, mine!, cancellationToken).ConfigureAwait(false);
            return firstChunk;
        }
    }

    /// <summary>
    /// Host offset and length of the longest run from <paramref name="offset"/> (at most <paramref name="length"/>)
    /// writable in place: COPIED clusters (all touched subclusters allocated) contiguous on the host, within one
    /// L2 table, none being remapped. (-1, 0) when the first cluster needs its mapping changed. Under the lock.
    /// </summary>
    private (long Host, int Length) FindInPlaceRun(long offset, int length)
    {
        var g = Geometry;
        long l1Index = g.L1Index(offset);
        if (l1Index >= L1Table.Length) return (-1, 0);
        var l1 = new L1Entry(L1Table[l1Index]);
        if (!l1.IsAllocated || !l1.IsCopied) return (-1, 0);
        using var lease = MetadataCache.Get(l1.L2TableOffset);
        EnsureL2OwnershipChecked(l1Index, lease.Data);
        var table = lease.Data;
        int index = g.L2Index(offset);
        long position = offset;
        long end = offset + length;
        long host = -1;
        long expectedHost = -1;
        while (position < end && index < g.L2Entries)
        {
            if (position != offset && IsUnownedEntry(position)) break;
            var entry = DecodeL2Entry(table, index, position);
            if (!entry.IsCopied || entry.IsCompressed || !entry.HasHostCluster(UsesExternalDataFile)) break;
            if (_inflight.ContainsKey(position >> g.ClusterBits)) break;
            // A cluster past the image's end is not written in place: the allocating path reports the damage.
            if (!UsesExternalDataFile && entry.HostOffset >= HostClusterLimit) break;
            int inCluster = g.OffsetInCluster(position);
            int chunk = (int)Math.Min(end - position, g.ClusterSize - inCluster);
            if (g.ExtendedL2)
            {
                uint needed = SubclusterMask(inCluster, chunk);
                if ((entry.AllocatedSubclusters & needed) != needed) break;
            }
            else if (entry.HasZeroFlag)
            {
                break;
            }
            long clusterHost = entry.HostOffset + inCluster;
            if (host < 0) host = clusterHost;
            else if (clusterHost != expectedHost) break;
            expectedHost = clusterHost + chunk;
            position += chunk;
            index++;
        }
        return host < 0 ? (-1, 0) : (host, (int)(position - offset));
    }

    /// <summary>Bitmap of the subclusters touched by [inCluster, inCluster+length) (extended L2).</summary>
    private uint SubclusterMask(int inCluster, int length)
    {
        int first = inCluster >> Geometry.SubclusterBits;
        int last = (inCluster + length - 1) >> Geometry.SubclusterBits;
        return (uint)((((ulong)1 << (last + 1)) - 1) & ~(((ulong)1 << first) - 1));
    }

    /// <summary>
    /// Decides where the cluster at <paramref name="offset"/> will live after the write: the same host cluster
    /// (extended L2, COPIED, only subclusters change) or a newly allocated one. Under the lock.
    /// </summary>
    private (long Host, bool IsNew) ChooseHostCluster(long offset, L2Entry old)
    {
        var g = Geometry;
        if (old.IsCopied && !old.IsCompressed && old.HasHostCluster(UsesExternalDataFile))
            return (old.HostOffset, false);
        if (UsesExternalDataFile)
            return (g.StartOfCluster(offset), false); // guest offset = host offset in the data file
        return (Refcounts.Allocate(1), true);
    }

    /// <summary>
    /// Writes one cluster's worth of new data into <paramref name="host"/> with copy-on-write of what the write
    /// does not cover (whole cluster, or touched subclusters with extended L2), then points the L2 entry at it.
    /// </summary>
    private async ValueTask AllocatingWriteAsync(long offset, ReadOnlyMemory<byte> data, L2Entry old, long host, bool newHost,
        TaskCompletionSource mine, CancellationToken cancellationToken)
    {
        var g = Geometry;
        long guestCluster = offset >> g.ClusterBits;
        long clusterStart = g.StartOfCluster(offset);
        int inCluster = g.OffsetInCluster(offset);
        bool committed = false, linked = false;
        try
        {
            // What part of the cluster to write: all of it, unless extended L2 lets untouched subclusters keep
            // their state (unallocated or zero) because the old entry has no data of its own to carry over.
            bool oldHasData = old.IsCompressed || (old.HasHostCluster(UsesExternalDataFile) && old.HostOffset != host);
            int writeStart = 0, writeEnd = g.ClusterSize;
            uint allocate = uint.MaxValue;
            if (g.ExtendedL2 && !oldHasData)
            {
                allocate = SubclusterMask(inCluster, data.Length);
                writeStart = (inCluster >> g.SubclusterBits) << g.SubclusterBits;
                writeEnd = ((inCluster + data.Length - 1) >> g.SubclusterBits) + 1 << g.SubclusterBits;
            }
            if (writeStart == inCluster && writeEnd == inCluster + data.Length)
            {
                CheckDataWrite(host + writeStart, data.Length);
                await DataFile.WriteAsync(host + writeStart, data).ConfigureAwait(false);
            }
            else if (ReadsZeroOutside(old, writeStart, inCluster, inCluster + data.Length, writeEnd)
                && ZeroForAllocation(host + writeStart, writeEnd - writeStart))
            {
                // The copy-on-write parts are zero: the file system zeroes them (no 64 KiB of zeroes copied and
                // written back for a 4 KiB write), and only the guest's bytes are written. Both land before the
                // L2 barrier like a whole-cluster write would.
                await DataFile.WriteAsync(host + inCluster, data).ConfigureAwait(false);
            }
            else
            {
                int length = writeEnd - writeStart;
                byte[] buffer = ArrayPool<byte>.Shared.Rent(length);
                try
                {
                    var span = buffer.AsMemory(0, length);
                    await ReadClusterContentAsync(clusterStart + writeStart, old, writeStart, span, cancellationToken).ConfigureAwait(false);
                    data.Span.CopyTo(span.Span[(inCluster - writeStart)..]);
                    CheckDataWrite(host + writeStart, length);
                    await DataFile.WriteAsync(host + writeStart, span).ConfigureAwait(false);
                }
                finally
                {
                    ArrayPool<byte>.Shared.Return(buffer);
                }
            }

            await MetadataLock.WaitAsync(CancellationToken.None).ConfigureAwait(false);
            try
            {
                using var l2 = GetL2TableForWrite(g.L1Index(offset));
                int index = g.L2Index(offset);
                L2Entry updated;
                if (g.ExtendedL2)
                {
                    // A full copy-on-write carries everything over: all subclusters allocated. Otherwise the touched
                    // subclusters become allocated and the others keep their state.
                    ulong bitmap = oldHasData ? 0 : old.Bitmap;
                    uint alloc = (uint)bitmap | allocate;
                    uint zero = (uint)(bitmap >> 32) & ~allocate;
                    updated = L2Entry.Standard(host, copied: true, ((ulong)zero << 32) | alloc);
                }
                else
                {
                    updated = L2Entry.Standard(host, copied: true);
                }
                if (newHost) Refcounts.AddReferenceDependencies(host, l2.Table);
                WriteL2Entry(l2.Data, index, updated);
                linked = true;
                MetadataCache.MarkDirtyAfterEarlierWrites(l2.Table);
                ReleaseOldHost(old, host, l2.Table);
                committed = true;
                _inflight.Remove(guestCluster);
            }
            finally
            {
                MetadataLock.Release();
            }
        }
        finally
        {
            if (!committed)
            {
                await MetadataLock.WaitAsync(CancellationToken.None).ConfigureAwait(false);
                try
                {
                    _inflight.Remove(guestCluster);
                    // The cluster allocated for a write that failed (ENOSPC, EIO) is referenced by nothing: give it back,
                    // so a write retried until space returns allocates once, not once per attempt, and leaks nothing.
                    if (newHost && !linked) ReleaseUnlinkedCluster(host);
                }
                finally
                {
                    MetadataLock.Release();
                }
            }
            mine.SetResult();
        }
    }

    /// <summary>Drops the refcount of a cluster allocated for a write that failed before any L2 entry pointed at it. Under the lock.</summary>
    private void ReleaseUnlinkedCluster(long host)
    {
        try
        {
            Refcounts.Change(host, Geometry.ClusterSize, -1);
        }
        catch (IOException)
        {
            // Reading the refcount block failed: the cluster stays allocated and unreferenced, a leak, never a corruption.
        }
    }

    /// <summary>
    /// True when the guest reads zero in [from, dataStart) and [dataEnd, to) of the cluster according to
    /// <paramref name="old"/>: zero-flagged, or unallocated without a backing file.
    /// </summary>
    private bool ReadsZeroOutside(L2Entry old, int from, int dataStart, int dataEnd, int to)
    {
        if (old.IsCompressed) return false;
        var g = Geometry;
        if (!g.ExtendedL2) return IsZeroKind(old.Classify(0, false, UsesExternalDataFile));
        for (int sub = from >> g.SubclusterBits; sub < (to + g.SubclusterSize - 1) >> g.SubclusterBits; sub++)
        {
            int subStart = sub << g.SubclusterBits, subEnd = subStart + g.SubclusterSize;
            bool cow = subStart < dataStart || subEnd > dataEnd;
            if (cow && !IsZeroKind(old.Classify(sub, true, UsesExternalDataFile))) return false;
        }
        return true;
    }

    private bool IsZeroKind(Qcow2ClusterKind kind) => kind switch
    {
        Qcow2ClusterKind.Zero or Qcow2ClusterKind.ZeroWithHostCluster => true,
        Qcow2ClusterKind.Unallocated or Qcow2ClusterKind.UnallocatedWithHostCluster => Backing is null,
        _ => false,
    };

    /// <summary>Zeroes a cluster range about to be allocated without writing data; false when only writing zeroes would do.</summary>
    private bool ZeroForAllocation(long host, int length)
    {
        CheckDataWrite(host, length);
        return DataFile.TryAllocateZeroed(host, length);
    }

    /// <summary>Drops the reference the old entry held when the cluster moved elsewhere (once the L2 change is durable).</summary>
    private void ReleaseOldHost(L2Entry old, long newHost, MetadataTable l2)
    {
        if (old.IsCompressed)
        {
            var descriptor = old.Compressed(Geometry.ClusterBits);
            Refcounts.FreeWhenDurable(descriptor.HostOffset, descriptor.CompressedLength, l2);
        }
        else if (old.HasHostCluster(UsesExternalDataFile) && old.HostOffset != newHost && !UsesExternalDataFile)
        {
            Refcounts.FreeWhenDurable(old.HostOffset, Geometry.ClusterSize, l2);
        }
    }

    /// <summary>
    /// Fills <paramref name="destination"/> with what the guest currently reads at <paramref name="guestOffset"/>
    /// (inside one cluster at <paramref name="inCluster"/>) according to <paramref name="entry"/>: old host data,
    /// zeroes, the backing chain, or the decompressed cluster.
    /// </summary>
    private async ValueTask ReadClusterContentAsync(long guestOffset, L2Entry entry, int inCluster, Memory<byte> destination, CancellationToken cancellationToken)
    {
        var g = Geometry;
        if (entry.IsCompressed)
        {
            ReadCompressed(entry, guestOffset, destination.Span);
            return;
        }
        int done = 0;
        while (done < destination.Length)
        {
            int position = inCluster + done;
            int sub = position >> g.SubclusterBits;
            var kind = entry.Classify(sub, g.ExtendedL2, UsesExternalDataFile);
            int runEnd = g.ExtendedL2 ? (sub + 1) << g.SubclusterBits : g.ClusterSize;
            while (g.ExtendedL2 && runEnd < inCluster + destination.Length && entry.Classify(runEnd >> g.SubclusterBits, true, UsesExternalDataFile) == kind)
                runEnd += g.SubclusterSize;
            int n = Math.Min(runEnd, inCluster + destination.Length) - position;
            // The same per-kind read as the read path (old data, zeroes, backing chain); invalid kinds are refused there.
            await ReadMappedAsync(new Qcow2Mapping(kind, entry.HostOffset + position, n, entry), guestOffset + done,
                destination.Slice(done, n), cancellationToken).ConfigureAwait(false);
            done += n;
        }
    }

    // ---- Zero and trim ------------------------------------------------------------------------------------

    private async ValueTask ZeroClusterAsync(long offset, int length, ZeroFlags flags, CancellationToken cancellationToken)
    {
        var g = Geometry;
        if (length == g.ClusterSize)
        {
            var change = (flags & ZeroFlags.NoHole) != 0 ? Qcow2ClusterChange.ZeroKeepAllocation : Qcow2ClusterChange.Zero;
            if (await ChangeWholeClusterAsync(offset, change, cancellationToken).ConfigureAwait(false))
                return;
        }
        else if (g.ExtendedL2)
        {
            // Whole subclusters become zero through the bitmap; partial ones at the edges are written.
            int inCluster = g.OffsetInCluster(offset);
            int firstWhole = (inCluster + g.SubclusterSize - 1) >> g.SubclusterBits;
            int endWhole = (inCluster + length) >> g.SubclusterBits;
            if (endWhole > firstWhole)
            {
                uint mask = (uint)((((ulong)1 << endWhole) - 1) & ~(((ulong)1 << firstWhole) - 1));
                if (await ZeroSubclustersAsync(offset, mask, cancellationToken).ConfigureAwait(false))
                {
                    int headEnd = firstWhole << g.SubclusterBits;
                    int tailStart = endWhole << g.SubclusterBits;
                    if (headEnd > inCluster)
                        await ZeroByWritingAsync(offset, headEnd - inCluster, flags, cancellationToken).ConfigureAwait(false);
                    if (inCluster + length > tailStart)
                        await ZeroByWritingAsync(g.StartOfCluster(offset) + tailStart, inCluster + length - tailStart, flags, cancellationToken).ConfigureAwait(false);
                    return;
                }
            }
        }
        if (await ReadsAsZeroAsync(offset, length, cancellationToken).ConfigureAwait(false))
            return;
        await ZeroByWritingAsync(offset, length, flags, cancellationToken).ConfigureAwait(false);
    }

    private async ValueTask ZeroByWritingAsync(long offset, int length, ZeroFlags flags, CancellationToken cancellationToken)
    {
        if ((flags & ZeroFlags.FastZero) != 0)
            throw new BlockDeviceException(BlockError.NotSupported, $"qcow2 image {Path}: zeroing 0x{offset:x}+{length} needs a data write");
        var zeroes = s_zeroCluster ??= new byte[1 << Qcow2Header.MaxClusterBits];
        long position = offset, end = offset + length;
        while (position < end)
        {
            int n = await WriteRunAsync(position, zeroes.AsMemory(0, (int)(end - position)), cancellationToken).ConfigureAwait(false);
            position += n;
        }
    }

    /// <summary>True when the guest already reads zero at [offset, offset+length) inside one cluster.</summary>
    private async ValueTask<bool> ReadsAsZeroAsync(long offset, int length, CancellationToken cancellationToken)
    {
        L2Entry entry;
        await MetadataLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (_inflight.ContainsKey(offset >> Geometry.ClusterBits)) return false;
            entry = ReadL2Entry(offset);
        }
        finally
        {
            MetadataLock.Release();
        }
        var g = Geometry;
        int inCluster = g.OffsetInCluster(offset);
        if (entry.IsCompressed) return false;
        for (int sub = inCluster >> g.SubclusterBits; sub <= (inCluster + length - 1) >> g.SubclusterBits; sub++)
        {
            var kind = entry.Classify(sub, g.ExtendedL2, UsesExternalDataFile);
            if (kind is Qcow2ClusterKind.Zero or Qcow2ClusterKind.ZeroWithHostCluster) continue;
            if (kind is Qcow2ClusterKind.Unallocated or Qcow2ClusterKind.UnallocatedWithHostCluster
                && (Backing is null || Backing.Size <= offset - inCluster + ((long)sub << g.SubclusterBits)))
                continue;
            return false;
        }
        return true;
    }

    /// <summary>Marks whole subclusters of one cluster as zero (extended L2). False when the cluster is busy or compressed.</summary>
    private async ValueTask<bool> ZeroSubclustersAsync(long offset, uint mask, CancellationToken cancellationToken)
    {
        var g = Geometry;
        while (true)
        {
            Task wait;
            await MetadataLock.WaitAsync(cancellationToken).ConfigureAwait(false);
            try
            {
                if (!_inflight.TryGetValue(offset >> g.ClusterBits, out var busy))
                {
                    var old = ReadL2Entry(offset);
                    if (old.IsCompressed || (old.HasHostCluster(UsesExternalDataFile) && !old.IsCopied)) return false;
                    uint alloc = old.AllocatedSubclusters & ~mask;
                    uint zero = old.ZeroSubclusters | mask;
                    var updated = new L2Entry(old.Raw, ((ulong)zero << 32) | alloc);
                    if (updated == old) return true;
                    using var l2 = GetL2TableForWrite(g.L1Index(offset));
                    WriteL2Entry(l2.Data, g.L2Index(offset), updated);
                    MetadataCache.MarkDirty(l2.Table);
                    return true;
                }
                wait = busy.Task;
            }
            finally
            {
                MetadataLock.Release();
            }
            await wait.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Zeroes or trims one whole cluster through its L2 entry, without writing data. Returns false when that is
    /// not possible (a v2 image whose backing data must be hidden: the caller writes zeroes instead).
    /// </summary>
    private async ValueTask<bool> ChangeWholeClusterAsync(long offset, Qcow2ClusterChange change, CancellationToken cancellationToken)
    {
        var g = Geometry;
        while (true)
        {
            Task wait;
            await MetadataLock.WaitAsync(cancellationToken).ConfigureAwait(false);
            try
            {
                if (!_inflight.TryGetValue(offset >> g.ClusterBits, out var busy))
                    return ChangeWholeClusterLocked(offset, change);
                wait = busy.Task;
            }
            finally
            {
                MetadataLock.Release();
            }
            await wait.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    private bool ChangeWholeClusterLocked(long offset, Qcow2ClusterChange change)
    {
        var g = Geometry;
        var old = ReadL2Entry(offset);
        CheckEntryTarget(old, offset, forChange: true); // its cluster may be freed or kept
        bool hasBacking = Backing is not null && Backing.Size > g.StartOfCluster(offset);
        bool oldHasHost = old.HasHostCluster(UsesExternalDataFile);
        bool keepHost = change == Qcow2ClusterChange.ZeroKeepAllocation && oldHasHost && old.IsCopied;
        bool v3 = Header.Version >= 3;
        L2Entry updated;
        if (change == Qcow2ClusterChange.Trim && !hasBacking)
        {
            updated = default; // unallocated reads as zero without a backing file
        }
        else if (!v3)
        {
            if (hasBacking)
            {
                // v2 has no zero flag: a trim keeps the data (it is only a hint); a zero must be written.
                return change == Qcow2ClusterChange.Trim;
            }
            if (keepHost) return false; // keep the allocation: write zeroes into it
            updated = default;
        }
        else if (g.ExtendedL2)
        {
            updated = new L2Entry(keepHost ? old.Raw & (L2Entry.OffsetMask | L2Entry.CopiedFlag) : 0, 0xffff_ffffUL << 32);
        }
        else
        {
            updated = new L2Entry((keepHost ? old.Raw & (L2Entry.OffsetMask | L2Entry.CopiedFlag) : 0) | L2Entry.ZeroFlag);
        }
        if (updated == old) return true;
        long l1Index = g.L1Index(offset);
        if (updated == default && !new L1Entry(l1Index < L1Table.Length ? L1Table[l1Index] : 0).IsAllocated)
            return true; // already unallocated, no L2 table needed
        using var l2 = GetL2TableForWrite(l1Index);
        WriteL2Entry(l2.Data, g.L2Index(offset), updated);
        MetadataCache.MarkDirty(l2.Table);
        if (!keepHost) ReleaseOldHost(old, -1, l2.Table);
        return true;
    }

    /// <summary>
    /// Bytes from <paramref name="position"/> (up to <paramref name="end"/>) covered by an L1 entry without an L2
    /// table in an image without backing file: they read as zero already, so zeroing or trimming skips them whole
    /// (a discard of a whole disk then costs one step per L2 table, not per cluster). 0 when that does not apply.
    /// </summary>
    private long UnmappedReadingZero(long position, long end)
    {
        if (Backing is not null) return 0;
        var g = Geometry;
        long l1Index = g.L1Index(position);
        if (l1Index < L1Table.Length && new L1Entry(Volatile.Read(ref L1Table[l1Index])).IsAllocated) return 0;
        long coverageEnd = (l1Index + 1) * g.L2Coverage;
        return Math.Min(end, coverageEnd) - position;
    }

    // ---- L1/L2 updates ------------------------------------------------------------------------------------

    /// <summary>The L2 entry mapping <paramref name="offset"/> (default when no L2 table). Under the lock.</summary>
    private L2Entry ReadL2Entry(long offset)
    {
        var g = Geometry;
        long l1Index = g.L1Index(offset);
        if (l1Index >= L1Table.Length) return default;
        var l1 = new L1Entry(L1Table[l1Index]);
        if (!l1.IsAllocated) return default;
        using var lease = MetadataCache.Get(l1.L2TableOffset);
        EnsureL2OwnershipChecked(l1Index, lease.Data);
        return DecodeL2Entry(lease.Data, g.L2Index(offset), offset);
    }

    private void WriteL2Entry(Span<byte> table, int index, L2Entry entry)
    {
        if (Geometry.ExtendedL2)
        {
            BigEndianTable.Set(table, index * 2, entry.Raw);
            BigEndianTable.Set(table, index * 2 + 1, entry.Bitmap);
        }
        else
        {
            BigEndianTable.Set(table, index, entry.Raw);
        }
    }

    /// <summary>
    /// The L2 table for <paramref name="l1Index"/>, pinned, ready to be changed: allocated if missing, copied if
    /// shared with a snapshot (L1 entry without COPIED). Under the lock.
    /// </summary>
    private MetadataTableLease GetL2TableForWrite(long l1Index)
    {
        var g = Geometry;
        var l1 = new L1Entry(L1Table[l1Index]);
        if (l1.IsAllocated && l1.IsCopied)
        {
            var existing = MetadataCache.Get(l1.L2TableOffset);
            try
            {
                EnsureL2OwnershipChecked(l1Index, existing.Data);
            }
            catch
            {
                existing.Dispose();
                throw;
            }
            return existing;
        }
        long offset = Refcounts.Allocate(1);
        ReserveTableCluster(offset);
        MetadataMap.Add(offset, g.ClusterSize);
        var lease = MetadataCache.GetNew(offset);
        try
        {
            if (l1.IsAllocated)
            {
                // Copy-on-write of an L2 table shared with a snapshot. Refcounts count the L1 tables reaching a cluster,
                // so the clusters it maps keep theirs (already shared, hence without COPIED); only the old table
                // loses this L1's reference, once the new L1 entry is durable.
                using (var shared = MetadataCache.Get(l1.L2TableOffset))
                {
                    // Damaged entries found here stay damaged in the copy (they are kept by guest offset).
                    EnsureL2OwnershipChecked(l1Index, shared.Data);
                    shared.Data.CopyTo(lease.Data);
                }
                for (int i = 0; i < g.L2Entries; i++)
                {
                    var entry = DecodeL2Entry(lease.Data, i, 0, checkOwnership: false);
                    if (entry.IsCopied)
                        WriteL2Entry(lease.Data, i, new L2Entry(entry.Raw & ~L2Entry.CopiedFlag, entry.Bitmap));
                }
            }
            SetL1Entry(l1Index, L1Entry.Create(offset, copied: true), lease.Table, offset);
            MarkL2Checked(l1Index);
            if (l1.IsAllocated)
                Refcounts.FreeWhenDurable(l1.L2TableOffset, g.ClusterSize, L1ChunkTable(l1Index));
            return lease;
        }
        catch
        {
            lease.Dispose();
            throw;
        }
    }

    private long L1ChunkOffset(long l1Index) =>
        (long)Header.L1TableOffset + ((l1Index * 8) >> Geometry.ClusterBits << Geometry.ClusterBits);

    private MetadataTable L1ChunkTable(long l1Index)
    {
        using var chunk = MetadataCache.Get(L1ChunkOffset(l1Index));
        return chunk.Table;
    }

    /// <summary>Points L1 entry <paramref name="l1Index"/> at a new L2 table, after that table and its refcount are durable.</summary>
    private void SetL1Entry(long l1Index, L1Entry entry, MetadataTable l2, long l2Offset)
    {
        using var chunk = MetadataCache.Get(L1ChunkOffset(l1Index));
        MetadataCache.AddDependency(l2, chunk.Table);
        Refcounts.AddReferenceDependencies(l2Offset, chunk.Table);
        BigEndianTable.Set(chunk.Data, (int)(l1Index & ((Geometry.ClusterSize / 8) - 1)), entry.Raw);
        MetadataCache.MarkDirty(chunk.Table);
        Volatile.Write(ref L1Table[l1Index], entry.Raw);
    }

    // ---- Overlap check and corruption --------------------------------------------------------------------

    /// <summary>Refuses a data write that would land on metadata (qemu's overlap check), marking the image corrupt.</summary>
    private void CheckDataWrite(long host, long length)
    {
        if (UsesExternalDataFile || _metadataMap is null || !_metadataMap.Overlaps(host, length)) return;
        throw ReportDamage($"qcow2 image {Path}: refusing a data write at host offset 0x{host:x} (+{length}) that overlaps metadata");
    }

    /// <summary>
    /// A failed fdatasync may have lost table writes: set the dirty bit so the next read-write open rebuilds the
    /// refcounts (as after an unclean shutdown), and keep it, since no later flush (nor a clean close) can succeed.
    /// Written without a sync: there is no good one to wait for; if it does not reach the disk either, neither did
    /// anything after the last good flush.
    /// </summary>
    private void MarkDirtyAfterSyncFailure(HostIoException failure)
    {
        if (Header.Version < 3) return;
        SetIncompatibleFeature(Qcow2IncompatibleFeatures.Dirty, sync: false);
    }

    private void MarkCorrupt()
    {
        if (Header.Version < 3 || IsReadOnly) return;
        SetIncompatibleFeature(Qcow2IncompatibleFeatures.Corrupt, sync: true);
    }

    /// <summary>
    /// Adds one incompatible feature bit in memory and in the header. The dirty bit after a failed sync is set from
    /// whichever thread's fdatasync failed, outside the metadata lock, so both setters share this small lock: a
    /// read-modify-write of the field from two threads would otherwise lose one bit, in memory and on disk.
    /// </summary>
    private void SetIncompatibleFeature(Qcow2IncompatibleFeatures bit, bool sync)
    {
        lock (_featureBitsLock)
        {
            var features = Header.IncompatibleFeatures | bit;
            Header.IncompatibleFeatures = features;
            try
            {
                WriteHeaderField(72, (ulong)features);
                if (sync) File.Flush();
            }
            catch (IOException)
            {
                // Refused either way (the write, or every later flush); failing to record it must not hide the
                // original problem.
            }
        }
    }

    private readonly Lock _featureBitsLock = new();

    private BlockDeviceException ReadOnlyError() => new(BlockError.Permission, $"qcow2 image {Path} is open read-only");
}
