using NbdQcow.HostIo;
using NbdQcow.Image.Qcow2.Check;
using NbdQcow.Image.Qcow2.Format;

namespace NbdQcow.Image.Qcow2.Recover;

/// <summary>
/// `nbdqcow recover`: reads a damaged qcow2 image (never writing it) and writes everything that can be found of the
/// guest disk to a new image: the active (or a snapshot's) mappings, checked entry by entry; orphan L2 tables whose
/// slot can be determined without guessing; optionally snapshot data for slots the view lacks. What cannot be placed
/// goes to a lost+found folder beside the output with the guest offsets it could belong to.
/// </summary>
public static class Qcow2Recovery
{
    /// <summary>Snapshot L1 entries read in total at most (a hostile snapshot table cannot take unbounded time).</summary>
    public const long MaxSnapshotL1Entries = 1L << 24;
    /// <summary>The read-only consistency check runs only on files up to this many clusters (its counts live in memory).</summary>
    public const long MaxCheckedClusters = 1L << 24;

    public static string LostAndFoundPathFor(string outputPath) => outputPath + ".lost";

    /// <exception cref="RecoveryInputException">The input or the request is unusable; nothing was written.</exception>
    public static async Task<RecoveryReport> RunAsync(string imagePath, RecoveryOptions options)
    {
        string output = options.OutputPath;
        string lostFolder = LostAndFoundPathFor(output);
        // Locks first: a writer on the image (or a user of an output --force would replace) refuses before anything changes.
        using var sourceLock = File.Exists(imagePath) ? AcquireLock(imagePath, options.Locking, readOnly: true) : null;
        using var outputLock = options.Force && File.Exists(output) && !SameFile(imagePath, output) && options.Locking != ImageLocking.Off
            ? AcquireLock(output, ImageLocking.On, readOnly: false) : null;
        CheckPaths(imagePath, output, lostFolder, options);

        using var file = OpenReadOnly(imagePath);
        var report = new RecoveryReport { ImagePath = imagePath, OutputPath = output, OutputFormat = options.Format };
        var header = ReadHeader(imagePath, file, options, report);
        report.ClusterSize = header.ClusterSize;
        report.HostFileLength = file.Length;
        CheckHeaderUsable(imagePath, header, report);
        var geometry = Qcow2Geometry.FromHeader(header);
        string? backing = DescribeBacking(imagePath, header, options, report);

        var overlay = new RecoveryTableOverlay(options.History, report);
        var image = new DamagedImage(file, header, overlay, report);
        using var cipher = UnlockForRecovery(imagePath, file, header, options, report, image);
        image.MarkStructure();
        report.CheckSummary = CheckDamagedImage(imagePath, file, image);

        long slots = geometry.RequiredL1Entries;
        var active = L1ViewReader.Read(image, "active", header.L1TableOffset, header.L1Size, slots, null, countLosses: options.Snapshot is null);
        var snapshots = ReadSnapshotViews(image);
        L1ViewReader.MarkTables(image, active);
        foreach (var s in snapshots) L1ViewReader.MarkTables(image, s.View);

        L1View recovered = active;
        long virtualSize = (long)header.Size;
        if (options.Snapshot is { } wanted)
        {
            var match = snapshots.FirstOrDefault(s => s.Snapshot.Name == wanted) ?? snapshots.FirstOrDefault(s => s.Snapshot.Id == wanted)
                ?? throw new RecoveryInputException($"{imagePath}: no snapshot named or with id \"{wanted}\" (snapshots: {string.Join(", ", snapshots.Select(s => $"{s.Snapshot.Id} \"{s.Snapshot.Name}\""))})");
            recovered = match.View;
            virtualSize = (long)Math.Min(match.Snapshot.VirtualSize ?? header.Size, Qcow2HeaderValidator.MaxVirtualSize);
            report.View = $"snapshot \"{match.Snapshot.Name}\" (id {match.Snapshot.Id})";
        }
        report.VirtualSize = virtualSize;

        var referenced = new HostClusterBitmap(image.FileClusters);
        var activeData = new HostClusterBitmap(image.FileClusters);
        var snapshotGuestByHost = new Dictionary<long, long>();
        options.Progress?.Report(new RecoveryProgress("reading tables", 0, 1));
        var streams = new List<CompressedStreamScan.KnownStream>();
        ViewReferenceMarker.Mark(image, active, referenced, activeData, null, streams: streams);
        foreach (var s in snapshots) ViewReferenceMarker.Mark(image, s.View, referenced, null, snapshotGuestByHost, sharedWith: active, streams: streams);
        options.Progress?.Report(new RecoveryProgress("reading tables", 1, 1));

        var conflicts = MappingConflicts.Find(image, recovered);
        var scan = OrphanClusterScan.Run(image, referenced, options.Progress);
        long guestClusters = (long)((header.Size + (ulong)geometry.ClusterSize - 1) >> geometry.ClusterBits);
        var placement = OrphanL2Placer.Place(image, active, scan.L2Candidates, activeData, snapshotGuestByHost, guestClusters, streams);
        options.Progress?.Report(new RecoveryProgress("searching shared clusters for lost compressed streams", 0, 1));
        var lostStreams = CompressedStreamScan.Run(image, streams, guestClusters);
        streams.Clear();
        options.Progress?.Report(new RecoveryProgress("searching shared clusters for lost compressed streams", 1, 1));
        if (options.Snapshot is not null) MovePlacementsToLostAndFound(report, placement);
        ReportSlotsOnlySnapshotsMap(image, active, snapshots, placement);
        foreach (var (slot, table) in placement.PlacedBySlot)
            report.Damage("mapping", $"active L1 slot {slot} had no L2 table; orphan L2 table 0x{table:x} placed there");

        string partial = $"{output}.partial-{Environment.ProcessId}";
        try
        {
            await using (var writer = RecoveredImageWriter.Create(partial, options.Format, virtualSize, geometry, backing, header.BackingFormat,
                options.Locking == ImageLocking.Off ? ImageLocking.Off : ImageLocking.On))
            {
                await WriteViewAsync(image, writer, recovered, conflicts, options.Snapshot is null ? placement : null,
                    options.FillFromSnapshots ? snapshots.Where(s => s.View != recovered).ToList() : [], options.Progress);
                await writer.FlushAsync();
            }
            WriteLostAndFound(image, lostFolder, imagePath, placement, scan, conflicts, lostStreams);
            File.Move(partial, output, overwrite: options.Force);
            HostDirectory.SyncParentOf(output);
        }
        catch
        {
            File.Delete(partial);
            throw;
        }
        report.Ranges.Sort((a, b) => a.GuestOffset != b.GuestOffset ? a.GuestOffset.CompareTo(b.GuestOffset) : b.Length.CompareTo(a.Length));
        return report;
    }

    private static ImageLock? AcquireLock(string path, ImageLocking locking, bool readOnly)
    {
        try
        {
            return ImageLock.Acquire(path, locking, readOnly);
        }
        catch (ImageLockConflictException e)
        {
            throw new RecoveryInputException(readOnly
                ? $"{e.Message}; recover reads an image nobody writes (-U/--force-share reads it anyway, at the risk of a moment's state)"
                : $"{e.Message}; --force will not replace an output someone uses", e);
        }
    }

    private static void CheckPaths(string imagePath, string output, string lostFolder, RecoveryOptions options)
    {
        if (!File.Exists(imagePath))
            throw new RecoveryInputException($"{imagePath}: no such file");
        if (SameFile(imagePath, output))
            throw new RecoveryInputException($"--output {output} is the damaged image itself; recover never writes the image it reads");
        if (options.Format == RecoveryOutputFormat.Raw && options.KeepBacking)
            throw new RecoveryInputException("--keep-backing needs --format qcow2 (a raw file cannot refer to a backing file)");
        if (options.Force)
        {
            if (Directory.Exists(output)) throw new RecoveryInputException($"--output {output} is a folder");
            if (Directory.Exists(lostFolder)) Directory.Delete(lostFolder, recursive: true);
            return;
        }
        if (File.Exists(output) || Directory.Exists(output))
            throw new RecoveryInputException($"--output {output} already exists; refusing to overwrite it (use --force to replace it)");
        if (Directory.Exists(lostFolder) || File.Exists(lostFolder))
            throw new RecoveryInputException($"{lostFolder} already exists (lost+found of an earlier run); refusing to overwrite it (use --force to replace it)");
    }

    private static bool SameFile(string a, string b)
    {
        static string Resolve(string p)
        {
            var full = Path.GetFullPath(p);
            try { return File.ResolveLinkTarget(full, returnFinalTarget: true)?.FullName ?? full; }
            catch (IOException) { return full; }
        }
        return File.Exists(b) && Resolve(a) == Resolve(b);
    }

    private static IHostFile OpenReadOnly(string path)
    {
        try
        {
            return HostFile.Open(path, new HostFileOptions(ReadOnly: true, Direct: false));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new RecoveryInputException($"{path}: cannot open for reading: {e.Message}", e);
        }
    }

    private static Qcow2Header ReadHeader(string path, IHostFile file, RecoveryOptions options, RecoveryReport report)
    {
        try
        {
            return DamagedHeaderReader.Read(path, file, options, report);
        }
        catch (Qcow2FormatException e) when (e.Field == "magic")
        {
            throw new RecoveryInputException($"{path}: not a qcow2 image ({e.Message}); a raw image needs no recovery of mappings", e);
        }
        catch (Qcow2FormatException e)
        {
            throw new RecoveryInputException($"{path}: the qcow2 header is unusable, so the cluster size and table locations are unknown; nothing recovered: {e.Message}", e);
        }
    }

    /// <summary>
    /// A LUKS-encrypted image is recovered only with its key: its data clusters are decrypted (each with its own host
    /// offset) and the recovered image is written unencrypted, since recover cannot re-encrypt for the new layout.
    /// </summary>
    private static Luks.SectorCipher? UnlockForRecovery(string path, IHostFile file, Qcow2Header header, RecoveryOptions options,
        RecoveryReport report, DamagedImage image)
    {
        if (header.EncryptionMethod != Qcow2EncryptionMethod.Luks) return null;
        (long Offset, long Length) area;
        try
        {
            area = Qcow2HeaderValidator.EncryptionHeaderArea(header, file.Length)!.Value;
        }
        catch (Qcow2FormatException e)
        {
            throw new RecoveryInputException($"{path}: the LUKS header cannot be found ({e.Message}); without it the data cannot be decrypted, nothing recovered", e);
        }
        if (options.EncryptionKey is not { } secret)
            throw new RecoveryInputException($"{path}: the image is LUKS-encrypted; recover needs its key to decrypt the data (--key-file FILE or " +
                "the NBDQCOW_KEY environment variable) and writes the recovered image unencrypted, nothing recovered. Without the key only " +
                "`nbdqcow check --repair all` can help (refcounts and leaks, metadata only)");
        var bytes = new byte[area.Length];
        file.Read(area.Offset, bytes);
        try
        {
            var luks = Luks.LuksHeader.Parse(bytes);
            byte[] key = Luks.LuksVolume.Unlock(luks, bytes, secret);
            var cipher = Luks.LuksVolume.CreateCipher(luks, key);
            System.Security.Cryptography.CryptographicOperations.ZeroMemory(key);
            image.DataCipher = cipher;
            image.EncryptionArea = area;
            report.Notes.Add($"the image is LUKS-encrypted ({luks.CipherSpec}): its data was decrypted with the key; the recovered image is NOT encrypted (re-encrypt with qemu-img convert -o encrypt.format=luks if needed)");
            return cipher;
        }
        catch (Exception e) when (e is Luks.LuksFormatException or Luks.EncryptionKeyException)
        {
            throw new RecoveryInputException($"{path}: {e.Message}; nothing recovered", e);
        }
    }

    /// <summary>Refuses what recovery cannot work with; unknown incompatible features are reported and recovery goes on.</summary>
    private static void CheckHeaderUsable(string path, Qcow2Header header, RecoveryReport report)
    {
        if (header.EncryptionMethod is not (Qcow2EncryptionMethod.None or Qcow2EncryptionMethod.Luks))
            throw new RecoveryInputException($"{path}: the image is encrypted with legacy AES (crypt_method {(uint)header.EncryptionMethod}); nbdqcow cannot decrypt it, nothing recovered");
        if (header.HasExternalDataFile)
            throw new RecoveryInputException($"{path}: guest data lives in the external data file {header.ExternalDataFile}; recover does not support external data files, nothing recovered");
        if (header.Size > Qcow2HeaderValidator.MaxVirtualSize)
            throw new RecoveryInputException($"{path}: qcow2 size = {header.Size}: larger than {Qcow2HeaderValidator.MaxVirtualSize}; the header is damaged, nothing recovered");
        if (header.HasExtendedL2 && (header.Version < 3 || header.ClusterBits < 14))
            throw new RecoveryInputException($"{path}: extended L2 with version {header.Version} and {header.ClusterSize}-byte clusters is not valid qcow2; the header is damaged, nothing recovered");
        var geometry = Qcow2Geometry.FromHeader(header);
        if (geometry.RequiredL1Entries > Qcow2HeaderValidator.MaxL1Entries)
            throw new RecoveryInputException($"{path}: qcow2 size = {header.Size} needs {geometry.RequiredL1Entries} L1 entries, more than qcow2 allows; the header is damaged, nothing recovered");
        var unknown = header.IncompatibleFeatures & ~Qcow2Header.KnownIncompatibleFeatures;
        if (unknown != 0)
            report.Damage("header", $"unknown incompatible feature bits 0x{(ulong)unknown:x} ({string.Join(", ", header.DescribeFeatures(Qcow2FeatureKind.Incompatible))}); recovering the mappings anyway");
        if ((header.IncompatibleFeatures & Qcow2IncompatibleFeatures.Corrupt) != 0)
            report.Notes.Add("the image is marked corrupt (incompatible bit 1)");
        if ((header.IncompatibleFeatures & Qcow2IncompatibleFeatures.Dirty) != 0)
            report.Notes.Add("the image is marked dirty (lazy refcounts not written back); refcounts are not used by recovery");
    }

    private static string? DescribeBacking(string imagePath, Qcow2Header header, RecoveryOptions options, RecoveryReport report)
    {
        if (header.BackingFileName is not { } name) return null;
        string resolved = Path.IsPathRooted(name) ? name : Path.Combine(Path.GetDirectoryName(Path.GetFullPath(imagePath)) ?? ".", name);
        if (!options.KeepBacking)
        {
            report.Notes.Add($"the image has a backing file ({name}); it was NOT followed: clusters the image does not map read as zero in the output. " +
                "Use --keep-backing to make the output refer to the same backing file.");
            return null;
        }
        if (!File.Exists(resolved))
            throw new RecoveryInputException($"--keep-backing: backing file {name} not found (looked at {resolved})");
        report.Notes.Add($"the output refers to the backing file {resolved} (--keep-backing); unmapped clusters read from it as before");
        return resolved;
    }

    /// <summary>
    /// Runs the read-only consistency check: what it finds (corruptions, leaks) is damage even when every mapping is
    /// intact, and only a check without corruptions lets refcounts serve as evidence (a zeroed refcount table would
    /// otherwise call every cluster free).
    /// </summary>
    private static string CheckDamagedImage(string imagePath, IHostFile file, DamagedImage image)
    {
        if (image.FileClusters > MaxCheckedClusters)
            return $"not run: the file has {image.FileClusters} clusters, more than {MaxCheckedClusters}";
        try
        {
            // With a pending journal laid over the tables, check what recovery sees: the journal applied in memory.
            var result = image.Overlay.IsEmpty ? Qcow2Checker.Check(file, Qcow2RepairMode.None) : Qcow2Checker.Check(imagePath, Qcow2RepairMode.None);
            if (result.FatalError is not null)
            {
                image.Report.Damage("check", $"the consistency check of the damaged image could not complete: {result.FatalError}");
                return $"could not complete: {result.FatalError}";
            }
            if (result.Corruptions > 0 || result.Leaks > 0)
                image.Report.Damage("check", $"the consistency check of the damaged image finds {result.Corruptions} corruptions and {result.Leaks} leaked clusters (refcounts disagree with the tables)");
            image.RefcountsConsistent = result.Corruptions == 0;
            return $"{result.Corruptions} corruptions, {result.Leaks} leaked clusters, {result.MappedGuestClusters}/{result.TotalGuestClusters} guest clusters mapped";
        }
        catch (Exception e) when (e is Qcow2FormatException or IOException or ArgumentException or OverflowException or IndexOutOfRangeException)
        {
            image.Report.Damage("check", $"the consistency check of the damaged image could not complete: {e.Message}");
            return $"could not complete: {e.Message}";
        }
    }

    private sealed record SnapshotView(Qcow2Snapshot Snapshot, L1View View);

    /// <summary>Every snapshot's L1, newest first.</summary>
    private static List<SnapshotView> ReadSnapshotViews(DamagedImage image)
    {
        var views = new List<SnapshotView>();
        long budget = MaxSnapshotL1Entries;
        foreach (var s in image.Snapshots.OrderByDescending(s => s.Date))
        {
            ulong size = Math.Min(s.VirtualSize ?? image.Header.Size, Qcow2HeaderValidator.MaxVirtualSize);
            // Slots past the disk hold the VM state of `savevm` snapshots: read them too, so their tables and data
            // count as referenced (never as orphans); the disk view ignores them (they lie past the virtual size).
            long slots = Math.Min(Math.Max(image.Geometry.RequiredL1EntriesFor((long)size), s.L1Size), Qcow2HeaderValidator.MaxL1Entries);
            if (slots > budget)
            {
                image.Report.Damage("snapshot", $"snapshot \"{s.Name}\" and older ones skipped: more L1 entries in total than {MaxSnapshotL1Entries}");
                break;
            }
            budget -= slots;
            views.Add(new SnapshotView(s, L1ViewReader.Read(image, $"snapshot \"{s.Name}\"", s.L1TableOffset, s.L1Size, slots, s.Date)));
        }
        return views;
    }

    /// <summary>qemu's active L1 always maps every slot a snapshot maps (they share tables until copy-on-write), so a slot only snapshots map means a lost L1 entry.</summary>
    private static void ReportSlotsOnlySnapshotsMap(DamagedImage image, L1View active, List<SnapshotView> snapshots, OrphanL2Placement placement)
    {
        for (long slot = 0; slot < active.Slots; slot++)
        {
            if (active.L2Offsets[slot] != 0 || placement.PlacedBySlot.ContainsKey(slot)) continue;
            var mapping = snapshots.FirstOrDefault(s => s.View.L2At(slot) != 0);
            if (mapping is not null)
                image.Report.Damage("mapping", $"active L1 slot {slot} is empty but snapshot \"{mapping.Snapshot.Name}\" maps it: the active L1 entry was probably lost" +
                    " (--fill-from-snapshots takes the snapshot's older data for it)");
        }
    }

    private static void MovePlacementsToLostAndFound(RecoveryReport report, OrphanL2Placement placement)
    {
        foreach (var (slot, table) in placement.PlacedBySlot)
        {
            var decision = report.OrphanDecisions.First(d => d.HostOffset == table && d.PlacedSlot == slot);
            report.OrphanDecisions.Remove(decision);
            var moved = decision with { PlacedSlot = null, Reason = $"belongs to active L1 slot {slot} ({decision.Reason}); not placed because a snapshot was recovered" };
            report.OrphanDecisions.Add(moved);
            placement.Unplaced.Add(moved);
            report.OrphanL2TablesPlaced--;
        }
        placement.PlacedBySlot.Clear();
    }

    private static async Task WriteViewAsync(DamagedImage image, RecoveredImageWriter writer, L1View view, MappingConflicts conflicts, OrphanL2Placement? placement,
        IReadOnlyList<SnapshotView> fillFrom, IProgress<RecoveryProgress>? progress)
    {
        var table = new byte[image.Geometry.ClusterSize];
        var report = image.Report;
        for (long slot = 0; slot < view.Slots; slot++)
        {
            progress?.Report(new RecoveryProgress("writing recovered clusters", slot, view.Slots));
            long l2 = view.L2Offsets[slot];
            string source = view.Name;
            bool fromOrphan = false, fromSnapshot = false;
            if (l2 == 0 && placement is not null && placement.PlacedBySlot.TryGetValue(slot, out long orphan))
            {
                l2 = orphan;
                source = $"orphan L2 table 0x{orphan:x}";
                fromOrphan = true;
            }
            if (l2 == 0)
            {
                var fill = fillFrom.FirstOrDefault(s => s.View.L2At(slot) != 0);
                if (fill is null) continue;
                l2 = fill.View.L2At(slot);
                source = fill.View.Name;
                fromSnapshot = true;
                report.SlotsFilledFromSnapshots++;
                report.Notes.Add($"L1 slot {slot} filled from {fill.View.Name} (taken {fill.Snapshot.Date:u}): its data is as old as that snapshot");
            }
            image.ReadTable(l2, table);
            long start = slot * image.Geometry.L2Coverage;
            report.Range(start, Math.Min(image.Geometry.L2Coverage, writer.Size - start), "in-place",
                fromOrphan ? $"orphan L2 table 0x{l2:x} placed at L1 slot {slot}: {report.OrphanDecisions.FirstOrDefault(d => d.PlacedSlot == slot)?.Reason}"
                : fromSnapshot ? $"{source} (--fill-from-snapshots, older data)" : $"{source} L1/L2 tables");
            var counts = await writer.WriteTableAsync(image, source, slot, l2, table, conflicts);
            report.DataClustersRecovered += counts.Data;
            report.CompressedClustersRecovered += counts.Compressed;
            report.ZeroClustersRecovered += counts.Zero;
            report.BytesWritten += counts.Bytes;
            if (fromOrphan) report.ClustersFromOrphanTables += counts.Data + counts.Compressed;
            if (fromSnapshot) report.ClustersFilledFromSnapshots += counts.Data + counts.Compressed;
        }
        progress?.Report(new RecoveryProgress("writing recovered clusters", view.Slots, view.Slots));
        var g = image.Geometry;
        foreach (var conflict in conflicts.Conflicts)
            foreach (long guest in conflict.GuestClusters)
                report.Range(guest << g.ClusterBits, g.ClusterSize, guest == conflict.Winner ? "in-place" : "lost+found",
                    guest == conflict.Winner ? $"contested cluster decided by evidence: {conflict.Reason}" : $"contested cluster: {conflict.Reason}");
        if (placement is not null)
            foreach (var d in placement.Unplaced)
                if (d.CandidateSlotCount == 1 && d.CandidateSlots.Count == 1)
                    report.Range(d.CandidateSlots[0] * g.L2Coverage, g.L2Coverage, "lost+found", $"orphan L2 table 0x{d.HostOffset:x} (its data) belongs here but was not placed: {d.Reason}");
    }

    /// <summary>Reads a standard cluster or decodes a compressed one into <paramref name="cluster"/>; false when it does not decompress.</summary>
    private static bool ReadMapped(DamagedImage image, Format.L2Entry entry, byte[] cluster, byte[] compressed)
    {
        if (!entry.IsCompressed)
        {
            image.ReadData(entry.HostOffset, cluster);
            return true;
        }
        var d = entry.Compressed(image.Geometry.ClusterBits);
        int take = (int)Math.Min(Math.Min(d.CompressedLength, compressed.Length), Math.Max(0, image.FileLength - d.HostOffset));
        image.File.Read(d.HostOffset, compressed.AsSpan(0, take));
        if (ClusterDecompressor.TryDecompress(image.Header.CompressionType, compressed, take, cluster)) return true;
        image.Report.Loss("compressed", $"compressed data at 0x{d.HostOffset:x} does not decompress; not saved");
        return false;
    }

    private static void WriteLostAndFound(DamagedImage image, string folder, string imagePath, OrphanL2Placement placement,
        OrphanClusterScan scan, MappingConflicts conflicts, CompressedStreamScan lostStreams)
    {
        var g = image.Geometry;
        var report = image.Report;
        using var lost = new LostAndFoundWriter(folder, imagePath, g.ClusterSize);
        var refcounts = new RefcountLookup(image);
        var table = new byte[g.ClusterSize];
        var cluster = new byte[g.ClusterSize];
        var compressed = new byte[g.ClusterSize * 2 + 512];
        foreach (var decision in placement.Unplaced)
        {
            image.ReadTable(decision.HostOffset, table);
            var slotStarts = decision.CandidateSlots.Select(s => s * g.L2Coverage).ToList();
            lost.Add(table, decision.HostOffset, "l2-table", slotStarts, decision.CandidateSlotCount,
                $"{decision.Reason}; {refcounts.Describe(image.ClusterOf(decision.HostOffset))}", candidateSlots: decision.CandidateSlots);
            for (int j = 0; j < g.L2Entries; j++)
            {
                var entry = image.GetL2Entry(table, j);
                if (!entry.IsCompressed && entry.HostOffset == 0) continue;
                var guests = decision.CandidateSlots.Select(s => ((s << g.L2Bits) + j) << g.ClusterBits).ToList();
                string note = $"entry {j} of L2 table 0x{decision.HostOffset:x}";
                long host;
                if (entry.IsCompressed)
                {
                    var d = entry.Compressed(g.ClusterBits);
                    host = d.HostOffset;
                    int take = (int)Math.Min(Math.Min(d.CompressedLength, compressed.Length), Math.Max(0, image.FileLength - d.HostOffset));
                    image.File.Read(d.HostOffset, compressed.AsSpan(0, take));
                    if (!ClusterDecompressor.TryDecompress(image.Header.CompressionType, compressed, take, cluster))
                    {
                        report.Loss("compressed", $"{note}: compressed data at 0x{host:x} does not decompress; not saved");
                        continue;
                    }
                    note += " (decompressed)";
                }
                else
                {
                    host = entry.HostOffset;
                    image.ReadData(host, cluster);
                    if (g.ExtendedL2) note += $" (subcluster bitmap 0x{entry.Bitmap:x16}: only allocated subclusters hold data)";
                }
                lost.Add(cluster, host, "l2-data", guests, decision.CandidateSlotCount, note, decision.HostOffset, j);
                report.LostGuestClusters++;
            }
        }
        foreach (var conflict in conflicts.Conflicts)
        {
            if (conflict.Winner is not null) continue;
            var guests = conflict.GuestClusters.Select(x => x << g.ClusterBits).ToList();
            if (!ReadMapped(image, conflict.Entry, cluster, compressed)) continue; // reported as it was written
            lost.Add(cluster, conflict.HostOffset, "conflict", guests, guests.Count, conflict.Reason);
        }
        foreach (var found in lostStreams.Found)
        {
            int take = (int)Math.Min(Math.Min(found.Length, compressed.Length), image.FileLength - found.Start);
            image.File.Read(found.Start, compressed.AsSpan(0, take));
            if (!ClusterDecompressor.TryDecompress(image.Header.CompressionType, compressed, take, cluster)) continue; // decoded once already
            var guests = found.HintGuestClusters.Select(x => x << g.ClusterBits).ToList();
            lost.Add(cluster, found.Start, "compressed-stream", guests, guests.Count, found.Note + " (saved decompressed)");
            report.Loss("compressed", found.Note + "; saved decompressed to lost+found");
        }
        foreach (long host in scan.OrphanData)
        {
            if (placement.Claimed.Get(image.ClusterOf(host))) continue;
            report.OrphanDataClusters++;
            image.ReadData(host, cluster);
            bool freed = image.RefcountsConsistent && refcounts.Get(image.ClusterOf(host)) == 0;
            if (freed) report.FreedLeftovers++;
            else report.LostGuestClusters++;
            lost.Add(cluster, host, freed ? "freed-data" : "orphan-data", [], 0, freed
                ? "no table maps this cluster and the refcounts (consistent with the tables) call it free: the leftover of a freed cluster, kept in case"
                : $"no table maps this cluster, its guest offset is unknown; {refcounts.Describe(image.ClusterOf(host))}");
        }
        lost.Complete();
        report.LostClusters = lost.Clusters;
        if (lost.Created)
        {
            report.LostAndFoundPath = folder;
            HostDirectory.SyncParentOf(Path.Combine(folder, LostAndFoundWriter.DataFileName));
        }
    }
}
