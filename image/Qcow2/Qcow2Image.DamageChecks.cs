using NbdQcow.Image.Qcow2.Format;

namespace NbdQcow.Image.Qcow2;

// Damaged or hostile L2 entries. Before the host bytes an entry names are read, freed or reused, they are checked:
// inside the image, outside its metadata (qemu's overlap check, for every kind of entry: standard, compressed,
// zero with a host cluster, subclusters), and, before a free or a reuse, still counted in the refcounts. A hit fails
// that one request with EIO, marks the image corrupt, reports one line, and touches nothing else.
//
// The end of the image: a cluster that starts at or past the end of the file is corruption. qemu's file layer reads
// past the end of a file as zeroes, and a cluster that starts inside the file and runs past its end reads that way
// here too (the last compressed cluster of `qemu-img convert -c`, a file truncated inside its last cluster). But an
// entry naming a cluster the file does not have is not data anyone wrote: read as zeroes it would hide the damage,
// and written in place it would put guest data where the allocator will later hand out the same cluster again.
// On a writable image "the end" is the allocator's end (at least the file's length at open, plus what it allocated
// since); an external data file has no such bound (it may be a sparse raw file shorter than the disk).
public sealed partial class Qcow2Image
{
    /// <summary>Length of the image file when a read-only image was opened (writable images use the allocator's end).</summary>
    private long _readOnlyFileLength;

    /// <summary>Bytes from 0 where host clusters named by L2 entries may start.</summary>
    private long HostClusterLimit => _refcounts is { } refcounts ? refcounts.EndCluster << Geometry.ClusterBits : _readOnlyFileLength;

    /// <summary>
    /// Checks that the host bytes <paramref name="entry"/> (mapping <paramref name="guestOffset"/>) names may be read,
    /// freed or reused (<paramref name="forChange"/>: also that they are counted in the refcounts). Throws EIO, with
    /// the image marked corrupt, when not. Under the metadata lock on a writable image.
    /// </summary>
    private void CheckEntryTarget(L2Entry entry, long guestOffset, bool forChange)
    {
        long host, length;
        if (entry.IsCompressed)
        {
            var descriptor = entry.Compressed(Geometry.ClusterBits);
            (host, length) = (descriptor.HostOffset, descriptor.CompressedLength);
        }
        else if (entry.HostOffset != 0 && !UsesExternalDataFile)
        {
            (host, length) = (entry.HostOffset, Geometry.ClusterSize);
        }
        else
        {
            return; // no host cluster, or one in the external data file (no metadata there, no end to keep)
        }
        string? problem = CutOffProblem(host, entry.IsCompressed ? 1 : length) ?? HostRangeProblem(host, length, forChange);
        if (problem is not null)
            throw DamagedEntry(entry, guestOffset, problem);
    }

    /// <summary>Checks a mapping about to be read (contiguous host clusters of one kind) before the read.</summary>
    private void CheckReadTarget(Qcow2Mapping mapping, long guestOffset)
    {
        if (mapping.Kind == Qcow2ClusterKind.Compressed)
        {
            CheckEntryTarget(mapping.Entry, guestOffset, forChange: false);
            return;
        }
        if (mapping.Kind != Qcow2ClusterKind.Normal || UsesExternalDataFile) return;
        string? problem = CutOffProblem(mapping.HostOffset, mapping.Length) ?? HostRangeProblem(mapping.HostOffset, mapping.Length, forChange: false);
        if (problem is not null)
            throw DamagedEntry(mapping.Entry, guestOffset, problem);
    }

    /// <summary>
    /// A writable image whose file was cut short: clusters its refcounts counted past the file's end at open are
    /// gone (the allocator never hands them out again), so an entry naming one names nothing anyone can read back.
    /// A compressed entry is judged by its first cluster (its last sector may run past a file that is not padded).
    /// </summary>
    private string? CutOffProblem(long host, long length)
    {
        if (_refcounts is not { } refcounts || refcounts.CountedEndClusterAtOpen == refcounts.FileEndCluster) return null;
        long first = host >> Geometry.ClusterBits, last = (host + length - 1) >> Geometry.ClusterBits;
        if (last < refcounts.FileEndCluster || first >= refcounts.CountedEndClusterAtOpen) return null;
        return $"host cluster 0x{Math.Max(first, refcounts.FileEndCluster) << Geometry.ClusterBits:x} lies past the end the file had " +
               $"when it was opened (0x{refcounts.FileEndCluster << Geometry.ClusterBits:x}): the file was cut short and the data is gone";
    }

    private string? HostRangeProblem(long host, long length, bool forChange)
    {
        var g = Geometry;
        long limit = HostClusterLimit;
        long lastCluster = g.StartOfCluster(host + length - 1);
        // A read-only image may be served while a writer grows it (force-share): look at the file again first.
        if (lastCluster >= limit && _refcounts is null)
            limit = _readOnlyFileLength = File.Length;
        if (lastCluster >= limit)
            return $"host cluster 0x{lastCluster:x} lies past the end of the image (0x{limit:x})";
        if (_metadataMap is { } map && map.Overlaps(host, length))
            return $"host range 0x{host:x}+{length} overlaps the image's metadata (L1/L2 tables, refcounts, header)";
        if (forChange && _refcounts is { } refcounts)
        {
            for (long cluster = g.StartOfCluster(host); cluster <= lastCluster; cluster += g.ClusterSize)
                if (refcounts.GetRefcount(cluster) == 0)
                    return $"host cluster 0x{cluster:x} has refcount 0 (it is free, yet this entry uses it)";
        }
        return null;
    }

    /// <summary>
    /// At a read-write open: every table the allocator must never hand out (header, L1 table, refcount table and
    /// blocks, L2 tables) must have a refcount. A zeroed refcount table or block makes them look free, and the first
    /// allocation would put guest data or a new table over them; such an image is refused for writing at once.
    /// </summary>
    private void EnsureMetadataIsCounted()
    {
        var refcounts = Refcounts;
        var g = Geometry;
        EnsureCounted("header cluster", 0, 1);
        if (Header.L1Size > 0) EnsureCounted("L1 table", (long)Header.L1TableOffset, Header.L1Size * 8L);
        EnsureCounted("refcount table", refcounts.TableOffset, (long)refcounts.TableClusters << g.ClusterBits);
        if (refcounts.FindUncountedBlock() is { } block) EnsureCounted("refcount block", block, g.ClusterSize);
        for (int i = 0; i < L1Table.Length; i++)
        {
            long l2 = (long)(L1Table[i] & L1Entry.OffsetMask);
            if (l2 != 0) EnsureCounted($"L2 table of L1 entry {i}", l2, g.ClusterSize);
        }
    }

    /// <summary>
    /// At a read-write open: no two tables may share a cluster. A refcount update into a cluster that is also an L2
    /// table, or an L2 update into the refcount table, or into an L2 table another L1 entry also owns (COPIED), would
    /// rewrite another structure: another guest range's mapping, or the refcounts. Such an image is refused for
    /// writing (read-only it is served as stored). L2 tables shared without COPIED are copied on write, as snapshots' are.
    /// </summary>
    private void EnsureTablesDoNotOverlap()
    {
        var g = Geometry;
        var owners = new Dictionary<long, string>();
        void Claim(string what, long offset, long length)
        {
            for (long cluster = offset >> g.ClusterBits; cluster <= (offset + Math.Max(length, 1) - 1) >> g.ClusterBits; cluster++)
            {
                if (owners.TryGetValue(cluster, out string? owner))
                    throw OverlapRefusal(what, cluster, owner);
                owners[cluster] = what;
            }
        }
        Claim("header", 0, 1);
        if (Header.L1Size > 0) Claim("L1 table", (long)Header.L1TableOffset, Header.L1Size * 8L);
        Claim("refcount table", Refcounts.TableOffset, (long)Refcounts.TableClusters << g.ClusterBits);
        var blocks = Refcounts.BlockOffsets;
        for (int i = 0; i < blocks.Length; i++)
            if (blocks[i] != 0) Claim($"refcount block of refcount table entry {i}", (long)blocks[i], g.ClusterSize);
        if (EncryptionArea is { } luks) Claim("encryption header", luks.Offset, luks.Length);
        if (Header.SnapshotCount > 0)
        {
            Claim("snapshot table", (long)Header.SnapshotsOffset, Math.Max(Qcow2SnapshotTable.SizeOf(Snapshots), 1));
            foreach (var snapshot in Snapshots)
                if (snapshot.L1Size > 0) Claim($"L1 table of snapshot \"{snapshot.Name}\"", (long)snapshot.L1TableOffset, snapshot.L1Size * 8L);
        }
        if (Header.Bitmaps is { } bitmaps && (Header.AutoclearFeatures & Qcow2AutoclearFeatures.Bitmaps) != 0)
        {
            // Tracking rewrites the directory (the in-use flag) and the bitmap tables while the image is served.
            Claim("bitmap directory", (long)bitmaps.DirectoryOffset, (long)bitmaps.DirectorySize);
            foreach (var bitmap in BitmapDirectory)
                if (bitmap.BitmapTableSize > 0) Claim($"table of bitmap \"{bitmap.Name}\"", (long)bitmap.BitmapTableOffset, bitmap.BitmapTableSize * 8L);
        }
        var copiedL2 = new HashSet<long>();
        var sharedL2 = new HashSet<long>();
        for (int i = 0; i < L1Table.Length; i++)
        {
            var entry = new L1Entry(L1Table[i]);
            if (!entry.IsAllocated) continue;
            long cluster = entry.L2TableOffset >> g.ClusterBits;
            string what = $"L2 table of L1 entry {i}";
            if (owners.TryGetValue(cluster, out string? owner) && !owner.StartsWith("L2 table", StringComparison.Ordinal))
                throw OverlapRefusal(what, cluster, owner);
            // Shared between active L1 entries: safe only while none claims sole ownership (all are copied on write).
            bool seen = !sharedL2.Add(cluster);
            if (seen && (entry.IsCopied || copiedL2.Contains(cluster)))
                throw OverlapRefusal(what, cluster, owner ?? "the L2 table of another L1 entry");
            if (entry.IsCopied) copiedL2.Add(cluster);
            owners.TryAdd(cluster, what);
        }
    }

    private Qcow2FormatException OverlapRefusal(string what, long cluster, string owner) =>
        new(what, $"0x{cluster << Geometry.ClusterBits:x}",
            $"overlaps the {owner}: a write through one would rewrite the other; serve the image read-only (--read-only) to copy " +
            $"its data off, check it with: nbdqcow check {Path}, or salvage it with: nbdqcow recover {Path} OUTPUT");

    private void EnsureCounted(string what, long offset, long length)
    {
        var g = Geometry;
        for (long cluster = g.StartOfCluster(offset); cluster < offset + length; cluster += g.ClusterSize)
        {
            if (Refcounts.GetRefcount(cluster) != 0) continue;
            throw new Qcow2FormatException($"refcount of the {what} at host offset 0x{cluster:x}", 0,
                "the refcount table or a refcount block is damaged (the allocator would overwrite this metadata); serve the image " +
                $"read-only, or repair it first: nbdqcow check --repair all {Path}");
        }
    }

    private BlockDeviceException DamagedEntry(L2Entry entry, long guestOffset, string problem) =>
        ReportDamage($"qcow2 image {Path} is corrupt: L2 entry 0x{entry.Raw:x16} for guest offset 0x{guestOffset:x}: {problem}");

    /// <summary>
    /// Damage found while serving: marks a writable image corrupt (qemu then refuses to write it until it is
    /// repaired), reports one line, and returns the EIO to fail the request with.
    /// </summary>
    private BlockDeviceException ReportDamage(string problem)
    {
        string message = IsReadOnly
            ? $"{problem}; check it with: nbdqcow check {Path}"
            : $"{problem}; the image is marked corrupt, repair it with: nbdqcow check --repair all {Path}";
        if (!IsReadOnly) MarkCorrupt();
        Options.DamageReport?.Invoke(message);
        return new BlockDeviceException(BlockError.Io, message);
    }
}
