using System.Buffers;
using NbdQcow.Cache;
using NbdQcow.HostIo;
using NbdQcow.Image.Qcow2.Format;

namespace NbdQcow.Image.Qcow2;

/// <summary>
/// A qcow2 image as a block device. This file holds opening (validation of every field, snapshots, external
/// data file, backing chain) and the read side (mapping lookup, reads, block status); the write path lives in
/// Qcow2Image.Write.cs and friends. Mapping lookups on a writable image run under <see cref="MetadataLock"/>,
/// data I/O never does.
/// </summary>
public sealed partial class Qcow2Image : IBlockDevice
{
    /// <summary>Longest backing chain accepted (qemu has no hard limit; a loop or a crafted chain must not exhaust us).</summary>
    public const int MaxBackingChainDepth = BackingChain.MaxDepth;
    /// <summary>One block status answer covers at most this many extents (a prefix is a valid answer).</summary>
    private const int MaxExtentsPerQuery = 2048;

    private Qcow2Image(string path, IHostFile file, Qcow2Header header, HostFileFactory hostFiles, ImageOpenOptions options)
    {
        Path = path;
        File = file;
        DataFile = file;
        Header = header;
        Geometry = Qcow2Geometry.FromHeader(header);
        HostFiles = hostFiles;
        Options = options;
        _readOnlyFileLength = file.Length;
    }

    /// <summary>Full path of the image file.</summary>
    public string Path { get; }

    /// <summary>The header as last read or written.</summary>
    public Qcow2Header Header { get; internal set; }

    public Qcow2Geometry Geometry { get; }

    public IReadOnlyList<Qcow2Snapshot> Snapshots { get; internal set; } = [];

    /// <summary>The internal snapshot being served (read-only), or null for the active image.</summary>
    public Qcow2Snapshot? ServedSnapshot { get; private set; }

    /// <summary>The backing image (any registered format), opened read-only, or null.</summary>
    public IBlockDevice? Backing { get; private set; }

    /// <summary>Resolved path of the backing file, or null.</summary>
    public string? BackingPath { get; private set; }

    /// <summary>Name of the backing file's format, from backing_fmt or a probed magic.</summary>
    public string? BackingFormat { get; private set; }

    /// <summary>Resolved path of the external data file, or null.</summary>
    public string? DataFilePath { get; private set; }

    /// <summary>Persistent dirty bitmaps as found in the bitmap directory.</summary>
    public IReadOnlyList<Qcow2BitmapDirectoryEntry> BitmapDirectory { get; internal set; } = [];

    public bool IsReadOnly { get; private set; }

    public long Size { get; internal set; }

    public BlockDeviceFeatures Features => IsReadOnly
        ? BlockDeviceFeatures.ReadOnly | BlockDeviceFeatures.BlockStatus | BlockDeviceFeatures.Cache | BlockDeviceFeatures.MultiConn
        : WritableFeatures;

    public BlockSizeHints BlockSizes => new(1, (uint)Math.Max(4096, Geometry.ClusterSize), 32u << 20);

    /// <summary>The qcow2 file itself (header, tables, and data unless an external data file is used).</summary>
    internal IHostFile File { get; }

    /// <summary>Where guest data clusters live: the image file, or the external data file.</summary>
    internal IHostFile DataFile { get; private set; }

    /// <summary>The L1 table in memory (raw big-endian-decoded entries) of the active image or the served snapshot.</summary>
    internal ulong[] L1Table { get; set; } = [];

    /// <summary>Held for mapping lookups and in-memory metadata updates, never across data I/O.</summary>
    internal SemaphoreSlim MetadataLock { get; } = new(1, 1);

    internal HostFileFactory HostFiles { get; }

    internal ImageOpenOptions Options { get; }

    internal bool UsesExternalDataFile => Header.HasExternalDataFile;

    /// <summary>Opens a qcow2 image. Read-write unless <see cref="ImageOpenOptions.ReadOnly"/> or a snapshot is asked for.</summary>
    public static Qcow2Image Open(string path, ImageOpenOptions options, HostFileFactory hostFiles)
    {
        // Every file of the image shares one latch: after a failed fdatasync on any of them no flush succeeds.
        var syncFailures = new SyncFailureLatch();
        var image = Open(path, options with { BackingRoot = CanonicalBackingRoot(path, options.BackingRoot) },
            syncFailures.Wrap(hostFiles), BackingChain.Start());
        image.SyncFailures = syncFailures;
        if (!image.IsReadOnly) syncFailures.OnFirstFailure(image.MarkDirtyAfterSyncFailure);
        return image;
    }

    /// <summary>The first failed fdatasync, after which every flush fails until the image is reopened.</summary>
    public SyncFailureLatch SyncFailures { get; private set; } = new();

    /// <summary>The backing root as a canonical folder: the one asked for, or the folder that really holds the image.</summary>
    private static string CanonicalBackingRoot(string imagePath, string? asked)
    {
        if (asked is not null)
            return HostPath.Canonical(asked) is { } root && Directory.Exists(root)
                ? root
                : throw new ArgumentException($"backing root {asked}: no such folder");
        string image = HostPath.Canonical(imagePath) ?? System.IO.Path.GetFullPath(imagePath);
        return System.IO.Path.GetDirectoryName(image) ?? "/";
    }

    /// <summary>Opens a qcow2 image read-only as the backing file of another image, one level down <paramref name="chain"/>.</summary>
    internal static Qcow2Image OpenBacking(string path, ImageOpenOptions options, BackingChain chain) =>
        Open(path, options, options.HostFileFactory ?? HostFile.Open, chain);

    private static Qcow2Image Open(string path, ImageOpenOptions options, HostFileFactory hostFiles, BackingChain chain)
    {
        string fullPath = System.IO.Path.GetFullPath(path);
        if (!chain.TryAdd(CanonicalPath(fullPath)))
            throw new Qcow2FormatException("backing file", fullPath, "backing chain loops back to an image already in the chain");
        bool readOnly = options.ReadOnly || options.Snapshot is not null;
        var file = LockedHostFile.Open(hostFiles, fullPath, new HostFileOptions(readOnly, options.CacheMode.UsesODirect()), options.Locking);
        Qcow2Image? image = null;
        try
        {
            var header = Qcow2Header.Read(file);
            Qcow2HeaderValidator.EnsureSupported(header);
            Qcow2HeaderValidator.Validate(header, file.Length);
            int overlaid;
            (file, header, overlaid) = ApplyPendingJournal(fullPath, file, header, readOnly, hostFiles);
            if (!readOnly && (header.IncompatibleFeatures & Qcow2IncompatibleFeatures.Corrupt) != 0)
                throw new Qcow2FormatException("incompatible_features", "corrupt bit (bit 1)",
                    "the image is marked corrupt; serve it read-only, or repair it first (nbdqcow check --repair all)");
            image = new Qcow2Image(fullPath, file, header, hostFiles, options) { IsReadOnly = readOnly, Size = (long)header.Size, PendingJournalTransactions = overlaid };
            image._namedPath = chain.NamedPath ?? fullPath;
            image.Snapshots = Qcow2SnapshotTable.Read(file, header, file.Length);
            image.LoadL1(options.Snapshot);
            image.OpenDataFile();
            image.OpenEncryption();
            image.OpenBacking(chain);
            image.LoadBitmapDirectory();
            if (!readOnly)
            {
                image.InitializeWriting();
                if (!image.IsReadOnly)
                    image.StartBitmapTracking();
            }
            return image;
        }
        catch
        {
            if (image is not null)
            {
                image.Backing?.DisposeAsync().AsTask().GetAwaiter().GetResult();
                image.DisposeFiles();
            }
            else
                file.Dispose();
            throw;
        }
    }

    private static string CanonicalPath(string fullPath)
    {
        try
        {
            return new FileInfo(fullPath).ResolveLinkTarget(returnFinalTarget: true)?.FullName ?? fullPath;
        }
        catch (IOException)
        {
            return fullPath;
        }
    }

    private void LoadL1(string? snapshotName)
    {
        ulong l1Offset = Header.L1TableOffset;
        uint l1Size = Header.L1Size;
        string field = "l1_table_offset";
        if (snapshotName is not null)
        {
            var snapshot = FindSnapshot(snapshotName)
                ?? throw new Qcow2FormatException("snapshot", snapshotName,
                    Snapshots.Count == 0 ? "the image has no internal snapshots" : $"no such snapshot (have: {string.Join(", ", SnapshotNames())})");
            ServedSnapshot = snapshot;
            l1Offset = snapshot.L1TableOffset;
            l1Size = snapshot.L1Size;
            field = $"snapshot \"{snapshot.Name}\" l1_table_offset";
            if (snapshot.VirtualSize is { } size)
            {
                if (size > Qcow2HeaderValidator.MaxVirtualSize)
                    throw new Qcow2FormatException($"snapshot \"{snapshot.Name}\" disk size", size, "too large");
                Size = (long)size;
            }
            if (l1Size > Qcow2HeaderValidator.MaxL1Entries)
                throw new Qcow2FormatException($"snapshot \"{snapshot.Name}\" l1_size", l1Size, $"more than the limit {Qcow2HeaderValidator.MaxL1Entries}");
            if (l1Size > 0)
                Qcow2HeaderValidator.CheckTable(field, l1Offset, l1Size * 8L, Geometry.ClusterOffsetMask, File.Length);
        }
        if (l1Size == 0)
        {
            L1Table = [];
            return;
        }
        // L1 size and offset were checked against the file length, so this allocation is bounded by the file.
        var l1 = BigEndianTable.Read(File, (long)l1Offset, (int)l1Size);
        long fileLength = File.Length;
        for (int i = 0; i < l1.Length; i++)
        {
            var entry = new L1Entry(l1[i]);
            long l2 = entry.L2TableOffset;
            (string Field, object Value, string Problem)? damage =
                entry.ReservedBits != 0 ? ($"L1 entry {i}", $"0x{entry.Raw:x16}", "reserved bits set")
                : l2 == 0 ? null
                : (l2 & Geometry.ClusterOffsetMask) != 0 ? ($"L1 entry {i} L2 table offset", l2, "not aligned to a cluster")
                : l2 > fileLength - Geometry.ClusterSize ? ($"L1 entry {i} L2 table offset", l2, $"L2 table lies past the end of the file ({fileLength} bytes)")
                : null;
            if (damage is not { } d) continue;
            // Writing would build on a mapping nobody can read. Read-only, everything else is still worth copying off:
            // only the guest range this entry maps fails.
            if (!IsReadOnly)
                throw new Qcow2FormatException(d.Field, d.Value,
                    $"{d.Problem}; serve it read-only (--read-only) to copy off every other range, check it with: nbdqcow check {Path}, " +
                    $"or salvage it into a new image with: nbdqcow recover {Path} OUTPUT");
            _damagedL1 ??= new Dictionary<long, string>();
            _damagedL1[i] = $"{d.Field} = {d.Value}: {d.Problem}";
            l1[i] = 0; // never followed: MapRange fails the range first
        }
        L1Table = l1;
        if (_damagedL1 is { Count: > 0 } damaged)
        {
            var (index, problem) = damaged.First();
            string more = damaged.Count > 1 ? $" (and {damaged.Count - 1} more L1 entries like it)" : "";
            Options.DamageReport?.Invoke(
                $"qcow2 image {Path} is damaged: {problem}{more}; guest range 0x{index * Geometry.L2Coverage:x}+0x{Geometry.L2Coverage:x} " +
                $"fails with EIO, every other range reads as stored; check it with: nbdqcow check {Path}, salvage it with: nbdqcow recover");
        }
    }

    /// <summary>Read-only images: L1 entries whose L2 table cannot be read (past the end of the file, unaligned), by L1 index.</summary>
    private Dictionary<long, string>? _damagedL1;

    /// <summary>True when the guest range of L1 entry <paramref name="l1Index"/> is lost with its L2 table (read-only images).</summary>
    internal bool IsL1EntryDamaged(long l1Index) => _damagedL1 is { } damaged && damaged.ContainsKey(l1Index);

    private Qcow2Snapshot? FindSnapshot(string nameOrId)
    {
        foreach (var s in Snapshots)
            if (s.Name == nameOrId)
                return s;
        foreach (var s in Snapshots)
            if (s.Id == nameOrId)
                return s;
        return null;
    }

    private List<string> SnapshotNames()
    {
        var names = new List<string>();
        foreach (var s in Snapshots)
            names.Add(s.Name);
        return names;
    }

    /// <summary>Resolves a file name stored in the image against the image's folder (as qemu does for relative names).</summary>
    /// <summary>The path relative names in this image resolve from: the name the image above used for it, else <see cref="Path"/>.</summary>
    private string? _namedPath;

    private string ResolveRelative(string name) =>
        System.IO.Path.IsPathRooted(name) ? name : System.IO.Path.GetFullPath(System.IO.Path.Combine(System.IO.Path.GetDirectoryName(_namedPath ?? Path) ?? ".", name));

    private void OpenDataFile()
    {
        if (!Header.HasExternalDataFile)
            return;
        string name = Header.ExternalDataFile!;
        if (name.Length == 0 || name.Contains("://", StringComparison.Ordinal))
            throw new Qcow2FormatException("external data file", name, "not a plain file name nbdqcow can open");
        if (HasProtocolPrefix(name))
            throw new Qcow2FormatException("external data file", name, ProtocolPrefixProblem);
        string resolved = ResolveRelative(name);
        if (!System.IO.File.Exists(resolved))
            throw new Qcow2FormatException("external data file", name, $"not found at {resolved}");
        // Open the path that was checked: the name may be a symlink someone retargets between the check and the open.
        string checkedPath = EnsureReferencedFileAllowed("external data file", name, resolved);
        DataFilePath = resolved;
        DataFile = LockedHostFile.Open(HostFiles, checkedPath, new HostFileOptions(IsReadOnly, Options.CacheMode.UsesODirect()), Options.Locking);
    }

    private const string ProtocolPrefixProblem =
        "has a protocol prefix (a ':' before any '/'): qemu opens such a name through that protocol (file:, nbd:, ...), " +
        "not as the file of that name, so serving the file would serve another disk than qemu's; write it as ./NAME for a file";

    /// <summary>qemu's test for a protocol name: a ':' before the first '/' ("file:x", "nbd:host:port"; not "./a:b").</summary>
    private static bool HasProtocolPrefix(string name)
    {
        int at = name.AsSpan().IndexOfAny(':', '/');
        return at >= 0 && name[at] == ':';
    }

    private void OpenBacking(BackingChain chain)
    {
        string? name = Header.BackingFileName;
        if (name is null)
            return;
        if (chain.Depth + 1 > MaxBackingChainDepth)
            throw new Qcow2FormatException("backing file", name, $"backing chain deeper than {MaxBackingChainDepth} images");
        if (name.StartsWith("json:", StringComparison.Ordinal) || name.Contains("://", StringComparison.Ordinal))
            throw new Qcow2FormatException("backing file", name, "only plain file names are supported as backing files");
        if (HasProtocolPrefix(name))
            throw new Qcow2FormatException("backing file", name, ProtocolPrefixProblem);
        string resolved = ResolveRelative(name);
        if (!System.IO.File.Exists(resolved))
            throw new Qcow2FormatException("backing file", name, $"not found at {resolved}");
        // From here on only the checked, symlink-free path is opened: the name may be a symlink someone retargets
        // between the check and the open.
        string checkedPath = EnsureReferencedFileAllowed("backing file", name, resolved);
        var format = Header.BackingFormat is { } recorded
            ? ImageFormats.Find(recorded) ?? throw new Qcow2FormatException("backing format", recorded,
                $"unsupported backing file format ({string.Join(", ", ImageFormats.Names)} are supported)")
            : ProbeBackingFormat(name, checkedPath);
        // The backing file is read through the same latched host files as this image.
        var backingOptions = Options with { ReadOnly = true, Snapshot = null, Format = format.Name, Journal = false, HostFileFactory = HostFiles };
        BackingPath = resolved;
        BackingFormat = format.Name;
        Backing = format.OpenBacking(checkedPath, backingOptions, chain.Next(resolved));
    }

    /// <summary>
    /// A file the image names is read (and, for a data file, written) on the client's behalf, so a crafted image could
    /// name any host file: /etc/shadow, /dev/sda, /proc/self/mem. Only regular files inside the backing root are used.
    /// Returns the canonical path that passed, which is the one to open.
    /// </summary>
    private string EnsureReferencedFileAllowed(string field, string name, string resolved)
    {
        string canonical = HostPath.Canonical(resolved)
            ?? throw new Qcow2FormatException(field, name, $"not found at {resolved}");
        // /proc and /sys files look regular but are kernel interfaces (/proc/self/mem, /proc/kcore), never images.
        if (!HostPath.IsRegularFile(canonical) || HostPath.IsInside(canonical, "/proc") || HostPath.IsInside(canonical, "/sys"))
            throw new Qcow2FormatException(field, name,
                $"{canonical} is not a regular file (a device, FIFO, socket, folder, or a /proc or /sys file); refusing to open it");
        string root = Options.BackingRoot ?? "/";
        if (!HostPath.IsInside(canonical, root))
            throw new Qcow2FormatException(field, name,
                $"resolves to {canonical}, outside the backing root {root} (files an image names must lie in the served image's folder " +
                $"unless allowed: serve --backing-root DIR or config key BackingRoot, e.g. {System.IO.Path.GetDirectoryName(canonical)})");
        return canonical;
    }

    /// <summary>
    /// Without backing_fmt only an unambiguous magic (qcow2's, or another registered format's) is accepted: guessing "raw"
    /// for anything else would let a guest-written backing file pass itself off as another format (qemu restricts such
    /// probing for the same reason).
    /// </summary>
    private ImageFormat ProbeBackingFormat(string name, string resolved)
    {
        using (var probe = HostFiles(resolved, new HostFileOptions(true, false)))
        {
            var head = new byte[(int)Math.Min(ImageFormats.MaxProbeLength, probe.Length)];
            probe.Read(0, head);
            if (ImageFormats.ProbeMagic(head) is { } format)
                return format;
        }
        throw new Qcow2FormatException("backing format", "(not recorded)",
            $"backing file {name} is not qcow2 and its format is not recorded; refusing to probe it. Record it with: qemu-img rebase -u -F raw -b '{name}' '{Path}'");
    }

    // ---- Mapping ------------------------------------------------------------------------------------------

    /// <summary>
    /// Maps the run of guest bytes starting at <paramref name="guestOffset"/> (at most <paramref name="maxLength"/>,
    /// never past the L2 table that maps it) that share one storage kind. Caller holds <see cref="MetadataLock"/>
    /// on a writable image.
    /// </summary>
    internal Qcow2Mapping MapRange(long guestOffset, long maxLength)
    {
        var g = Geometry;
        long coverage = g.L2Coverage;
        long limit = Math.Min(maxLength, coverage - (guestOffset & (coverage - 1)));
        long l1Index = g.L1Index(guestOffset);
        long l2Offset = l1Index < L1Table.Length ? (long)(L1Table[l1Index] & L1Entry.OffsetMask) : 0;
        if (l2Offset == 0)
        {
            if (_damagedL1 is { } damaged && damaged.TryGetValue(l1Index, out string? problem))
                throw new BlockDeviceException(BlockError.Io,
                    $"qcow2 image {Path} is damaged: guest offset 0x{guestOffset:x} is mapped by {problem}; check it with: nbdqcow check {Path}");
            return new Qcow2Mapping(Qcow2ClusterKind.Unallocated, 0, limit, default);
        }

        using var lease = MetadataCache.Get(l2Offset);
        EnsureL2OwnershipChecked(l1Index, lease.Data);
        ReadOnlySpan<byte> table = lease.Data;
        {
            int index = g.L2Index(guestOffset);
            int inCluster = g.OffsetInCluster(guestOffset);
            var entry = DecodeL2Entry(table, index, guestOffset);
            int firstSub = inCluster >> g.SubclusterBits;
            var kind = entry.Classify(firstSub, g.ExtendedL2, UsesExternalDataFile);
            if (kind == Qcow2ClusterKind.Invalid)
                throw Corrupt(guestOffset, entry, "subcluster bitmap has invalid combination of allocated and zero bits");
            long host = kind is Qcow2ClusterKind.Normal or Qcow2ClusterKind.ZeroWithHostCluster or Qcow2ClusterKind.UnallocatedWithHostCluster
                ? entry.HostOffset + inCluster
                : 0;
            long runEnd = RunInCluster(entry, kind, firstSub);
            long length = runEnd - inCluster;
            if (kind == Qcow2ClusterKind.Compressed || runEnd < g.ClusterSize)
                return new Qcow2Mapping(kind, kind == Qcow2ClusterKind.Compressed ? 0 : host, Math.Min(length, limit), entry);
            while (length < limit && ++index < g.L2Entries)
            {
                // The run reached the end of a cluster: extend it into the next cluster while the kind stays the same.
                if (IsUnownedEntry(guestOffset + length)) break;
                var next = DecodeL2Entry(table, index, guestOffset + length);
                var nextKind = next.Classify(0, g.ExtendedL2, UsesExternalDataFile);
                if (nextKind != kind)
                    break;
                if (kind == Qcow2ClusterKind.Normal && next.HostOffset != host + length)
                    break;
                long run = RunInCluster(next, nextKind, 0);
                length += run;
                if (run < g.ClusterSize)
                    break;
            }
            return new Qcow2Mapping(kind, host, Math.Min(length, limit), entry);
        }
    }

    /// <summary>End (in bytes from the cluster start) of the run of subclusters from <paramref name="firstSub"/> with <paramref name="kind"/>.</summary>
    private long RunInCluster(L2Entry entry, Qcow2ClusterKind kind, int firstSub)
    {
        var g = Geometry;
        if (!g.ExtendedL2 || kind == Qcow2ClusterKind.Compressed)
            return g.ClusterSize;
        int sub = firstSub + 1;
        while (sub < g.SubclustersPerCluster && entry.Classify(sub, true, UsesExternalDataFile) == kind)
            sub++;
        return (long)sub << g.SubclusterBits;
    }

    private L2Entry DecodeL2Entry(ReadOnlySpan<byte> table, int index, long guestOffset, bool checkOwnership = true)
    {
        L2Entry entry = Geometry.ExtendedL2
            ? new L2Entry(BigEndianTable.Get(table, index * 2), BigEndianTable.Get(table, index * 2 + 1))
            : new L2Entry(BigEndianTable.Get(table, index));
        string? problem = entry.Problem(Geometry, UsesExternalDataFile);
        if (problem is not null)
            throw Corrupt(guestOffset, entry, problem);
        if (checkOwnership) CheckEntryOwnership(entry, guestOffset);
        return entry;
    }

    private BlockDeviceException Corrupt(long guestOffset, L2Entry entry, string problem) =>
        new(BlockError.Io, $"qcow2 image {Path} is corrupt: L2 entry 0x{entry.Raw:x16} for guest offset 0x{guestOffset:x}: {problem}");

    private async ValueTask<Qcow2Mapping> LookupAsync(long guestOffset, long maxLength, CancellationToken cancellationToken)
    {
        if (IsReadOnly)
            return MapRange(guestOffset, maxLength);
        await MetadataLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            return MapRange(guestOffset, maxLength);
        }
        finally
        {
            MetadataLock.Release();
        }
    }

    // ---- Reads --------------------------------------------------------------------------------------------

    public async ValueTask ReadAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        while (buffer.Length > 0)
        {
            Qcow2Mapping mapping;
            int guardToken = -1;
            if (IsReadOnly)
            {
                mapping = MapRange(offset, buffer.Length);
                CheckReadTarget(mapping, offset);
            }
            else
            {
                await MetadataLock.WaitAsync(cancellationToken).ConfigureAwait(false);
                try
                {
                    mapping = MapRange(offset, buffer.Length);
                    CheckReadTarget(mapping, offset);
                    // A host cluster read outside the lock must not be freed and reused until the read is done.
                    if (mapping.Kind is Qcow2ClusterKind.Normal or Qcow2ClusterKind.Compressed)
                        guardToken = _dataGuard.Enter();
                }
                finally
                {
                    MetadataLock.Release();
                }
            }
            int n = (int)mapping.Length;
            var chunk = buffer[..n];
            try
            {
                await ReadMappedAsync(mapping, offset, chunk, cancellationToken).ConfigureAwait(false);
            }
            catch (IOException e) when (e is not BlockDeviceException)
            {
                throw HostIoErrors.ToBlockDeviceException(e);
            }
            finally
            {
                if (guardToken >= 0)
                    _dataGuard.Exit(guardToken);
            }
            offset += n;
            buffer = buffer[n..];
        }
    }

    private async ValueTask ReadMappedAsync(Qcow2Mapping mapping, long offset, Memory<byte> chunk, CancellationToken cancellationToken)
    {
        switch (mapping.Kind)
        {
            case Qcow2ClusterKind.Normal:
                if (IsEncryptionLocked) throw EncryptedWithoutKey(offset);
                await DataFile.ReadAsync(mapping.HostOffset, chunk).ConfigureAwait(false);
                break;
            case Qcow2ClusterKind.Zero:
            case Qcow2ClusterKind.ZeroWithHostCluster:
                chunk.Span.Clear();
                break;
            case Qcow2ClusterKind.Unallocated:
            case Qcow2ClusterKind.UnallocatedWithHostCluster:
                await ReadBackingAsync(offset, chunk, cancellationToken).ConfigureAwait(false);
                break;
            case Qcow2ClusterKind.Compressed:
                ReadCompressed(mapping.Entry, offset, chunk.Span);
                break;
            default:
                throw new BlockDeviceException(BlockError.Io, $"qcow2 image {Path}: unexpected mapping {mapping.Kind} at 0x{offset:x}");
        }
    }

    /// <summary>Reads what the backing chain holds at [offset, offset+length); zero past its end or without one.</summary>
    internal async ValueTask ReadBackingAsync(long offset, Memory<byte> destination, CancellationToken cancellationToken)
    {
        var backing = Backing;
        long within = backing is null ? 0 : Math.Clamp(backing.Size - offset, 0, destination.Length);
        if (within > 0)
            await backing!.ReadAsync(offset, destination[..(int)within], cancellationToken).ConfigureAwait(false);
        destination.Span[(int)within..].Clear();
    }

    /// <summary>Decompresses the cluster mapped by a compressed <paramref name="entry"/> and copies the part at <paramref name="guestOffset"/>.</summary>
    internal void ReadCompressed(L2Entry entry, long guestOffset, Span<byte> destination)
    {
        if (Encryption is not null)
            throw new BlockDeviceException(BlockError.Io,
                $"qcow2 image {Path}: compressed cluster for guest offset 0x{guestOffset:x} in an encrypted image (qcow2 cannot encrypt compressed clusters)");
        var descriptor = entry.Compressed(Geometry.ClusterBits);
        int clusterSize = Geometry.ClusterSize;
        byte[] compressed = ArrayPool<byte>.Shared.Rent(descriptor.CompressedLength);
        byte[] cluster = ArrayPool<byte>.Shared.Rent(clusterSize);
        try
        {
            File.Read(descriptor.HostOffset, compressed.AsSpan(0, descriptor.CompressedLength));
            if (!ClusterDecompressor.TryDecompress(Header.CompressionType, compressed, descriptor.CompressedLength, cluster.AsSpan(0, clusterSize)))
                throw new BlockDeviceException(BlockError.Io,
                    $"qcow2 image {Path}: compressed cluster at host offset 0x{descriptor.HostOffset:x} ({descriptor.CompressedLength} bytes, {Header.CompressionType}) for guest offset 0x{guestOffset:x} does not decompress");
            cluster.AsSpan(Geometry.OffsetInCluster(guestOffset), destination.Length).CopyTo(destination);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(compressed);
            ArrayPool<byte>.Shared.Return(cluster);
        }
    }

    // ---- Block status ---------------------------------------------------------------------------------------

    public async ValueTask GetBlockStatusAsync(long offset, long length, List<BlockExtent> extents, CancellationToken cancellationToken = default)
    {
        long end = offset + length;
        int first = extents.Count;
        while (offset < end && extents.Count - first < MaxExtentsPerQuery)
        {
            var mapping = await LookupAsync(offset, end - offset, cancellationToken).ConfigureAwait(false);
            switch (mapping.Kind)
            {
                case Qcow2ClusterKind.Normal:
                case Qcow2ClusterKind.Compressed:
                    Append(extents, first, mapping.Length, BlockExtentFlags.Data);
                    break;
                case Qcow2ClusterKind.Zero:
                case Qcow2ClusterKind.ZeroWithHostCluster:
                    Append(extents, first, mapping.Length, BlockExtentFlags.Hole | BlockExtentFlags.Zero);
                    break;
                default:
                    long covered = await AppendBackingStatusAsync(offset, mapping.Length, extents, first, cancellationToken).ConfigureAwait(false);
                    if (covered < mapping.Length)
                        return; // the answer covers a prefix of the range, as a block status reply may
                    break;
            }
            offset += mapping.Length;
        }
    }

    /// <summary>
    /// Appends the backing chain's status for an unallocated run; returns how much of it the extents cover. One run
    /// can span a whole L2 table's range (gigabytes with large clusters), so a fragmented backing file could
    /// otherwise grow the list without bound for one request: it stops at <see cref="MaxExtentsPerQuery"/>.
    /// </summary>
    private async ValueTask<long> AppendBackingStatusAsync(long offset, long length, List<BlockExtent> extents, int first, CancellationToken cancellationToken)
    {
        var backing = Backing;
        long within = backing is null ? 0 : Math.Clamp(backing.Size - offset, 0, length);
        if (within > 0)
        {
            var inner = new List<BlockExtent>();
            long done = 0;
            while (done < within)
            {
                if (extents.Count - first >= MaxExtentsPerQuery)
                    return done;
                inner.Clear();
                await backing!.GetBlockStatusAsync(offset + done, within - done, inner, cancellationToken).ConfigureAwait(false);
                if (inner.Count == 0)
                    throw new BlockDeviceException(BlockError.Io, $"backing file {BackingPath} returned no block status at 0x{offset + done:x}");
                foreach (var extent in inner)
                {
                    long n = Math.Min(extent.Length, within - done);
                    if (n <= 0)
                        break;
                    Append(extents, first, n, extent.Flags);
                    done += n;
                    if (extents.Count - first >= MaxExtentsPerQuery)
                        return done;
                }
            }
        }
        if (length > within)
            Append(extents, first, length - within, BlockExtentFlags.Hole | BlockExtentFlags.Zero);
        return length;
    }

    private static void Append(List<BlockExtent> extents, int first, long length, BlockExtentFlags flags)
    {
        if (extents.Count > first && extents[^1].Flags == flags)
            extents[^1] = new BlockExtent(extents[^1].Length + length, flags);
        else
            extents.Add(new BlockExtent(length, flags));
    }

    public ValueTask CacheAsync(long offset, long length, CancellationToken cancellationToken = default) => default;

    // ---- Closing ------------------------------------------------------------------------------------------

    public async ValueTask DisposeAsync()
    {
        try
        {
            if (!IsReadOnly)
            {
                try
                {
                    await StoreBitmapsAsync().ConfigureAwait(false);
                }
                finally
                {
                    await CloseWritingAsync().ConfigureAwait(false);
                }
            }
        }
        finally
        {
            if (Backing is not null)
                await Backing.DisposeAsync().ConfigureAwait(false);
            DisposeFiles();
        }
    }

    private void DisposeFiles()
    {
        if (!ReferenceEquals(DataFile, File))
            DataFile.Dispose();
        File.Dispose();
        MetadataLock.Dispose();
    }
}
