using System.Buffers.Binary;
using NbdQcow.HostIo;
using NbdQcow.Image.Qcow2.Format;

namespace NbdQcow.Image.Qcow2.Check;

/// <summary>
/// One pass of <see cref="Qcow2Checker"/>: counts the references to every host cluster (header, L1/L2 tables of the
/// active image and of every snapshot, data and compressed clusters, refcount structure, snapshot table, bitmaps),
/// compares them with the refcounts on disk and checks COPIED flags; can then repair.
/// </summary>
internal sealed class Qcow2ReferenceScan
{
    private readonly IHostFile _file;
    private readonly Qcow2Header _header;
    private readonly Qcow2Geometry _g;
    private readonly Qcow2CheckResult _result;
    private readonly int _clusterSize;
    private readonly int _clusterBits;
    private readonly long _fileLength;
    private readonly long _fileClusters;
    private readonly bool _external;
    private uint[] _refs = [];
    /// <summary>
    /// References to clusters past the end of the file (a file cut short): corruption, but still references. A leak
    /// repair must not free them and a rebuild must not place the new refcount structure on them, or the entries
    /// naming them would read another offset's data (or the refcounts) once the allocator hands them out again.
    /// </summary>
    private readonly Dictionary<long, uint> _pastEnd = new();
    private uint[] _onDisk = [];
    private readonly List<long> _structureClusters = new();
    private readonly List<long> _leaked = new();
    private readonly List<(long Table, int Index, long Host, bool Copied)> _l2Copied = new();
    private readonly List<(long Index, long L2, bool Copied)> _l1Copied = new();

    public Qcow2ReferenceScan(IHostFile file, Qcow2Header header, Qcow2CheckResult result)
    {
        _file = file;
        _header = header;
        _g = Qcow2Geometry.FromHeader(header);
        _result = result;
        _clusterSize = header.ClusterSize;
        _clusterBits = header.ClusterBits;
        _fileLength = file.Length;
        _fileClusters = (_fileLength + _clusterSize - 1) >> _clusterBits;
        _external = header.HasExternalDataFile;
    }

    public void Run()
    {
        if (_fileClusters > Qcow2Checker.MaxCheckedClusters)
        {
            _result.FatalError = $"image file has {_fileClusters} clusters, more than this checker handles ({Qcow2Checker.MaxCheckedClusters})";
            return;
        }
        _refs = new uint[_fileClusters];
        Reference(0, _clusterSize, "header");
        if (Qcow2HeaderValidator.EncryptionHeaderArea(_header, _fileLength) is { } luks)
            Reference(luks.Offset, luks.Length, "LUKS encryption header");
        _result.TotalGuestClusters = (long)((_header.Size + (ulong)_clusterSize - 1) >> _clusterBits);
        CheckL1((long)_header.L1TableOffset, _header.L1Size, "active", active: true);
        CheckSnapshots();
        CheckBitmaps();
        CheckRefcountStructure();
        CompareRefcounts();
        CheckCopiedFlags();
        long last = -1, allocated = 0;
        for (long c = 0; c < _refs.Length; c++)
            if (_refs[c] != 0) { last = c; allocated++; }
        _result.AllocatedClusters = allocated;
        _result.ImageEndOffset = (last + 1) << _clusterBits;
    }

    private void Reference(long offset, long length, string what, bool structure = false)
    {
        if (length <= 0) return;
        long first = offset >> _clusterBits;
        long last = (offset + length - 1) >> _clusterBits;
        for (long c = first; c <= last; c++)
        {
            if (c >= _fileClusters)
            {
                _result.Corruption($"{what} at 0x{offset:x} (+{length}) lies past the end of the file ({_fileLength} bytes)");
                for (; c <= last; c++) CountPastEnd(c);
                return;
            }
            if (_refs[c] < uint.MaxValue) _refs[c]++;
            if (structure) _structureClusters.Add(c);
        }
    }

    private void CountPastEnd(long cluster) =>
        _pastEnd[cluster] = _pastEnd.TryGetValue(cluster, out uint n) && n == uint.MaxValue ? n : n + 1;

    private uint References(long cluster) =>
        cluster < _fileClusters ? _refs[cluster] : _pastEnd.GetValueOrDefault(cluster);

    private bool InsideFile(long offset, long length) => offset >= 0 && length >= 0 && offset <= _fileLength - length;

    private void CheckL1(long offset, uint size, string name, bool active)
    {
        if (size == 0) return;
        if ((offset & (_clusterSize - 1)) != 0 || offset == 0 || !InsideFile(offset, size * 8L))
        {
            _result.Corruption($"{name} L1 table at 0x{offset:x} ({size} entries) is unaligned or outside the file");
            return;
        }
        Reference(offset, size * 8L, $"{name} L1 table");
        var l1 = BigEndianTable.Read(_file, offset, (int)size);
        var table = new byte[_clusterSize];
        for (long i = 0; i < l1.Length; i++)
        {
            var entry = new L1Entry(l1[i]);
            if (entry.ReservedBits != 0)
                _result.Corruption($"{name} L1 entry {i} = 0x{entry.Raw:x16}: reserved bits set");
            long l2 = entry.L2TableOffset;
            if (l2 == 0) continue;
            if ((l2 & (_clusterSize - 1)) != 0 || !InsideFile(l2, _clusterSize))
            {
                _result.Corruption($"{name} L1 entry {i}: L2 table at 0x{l2:x} is unaligned or outside the file");
                continue;
            }
            Reference(l2, _clusterSize, $"{name} L2 table");
            if (active) _l1Copied.Add((i, l2, entry.IsCopied));
            _file.Read(l2, table);
            CheckL2(table, l2, i, name, active);
        }
    }

    private void CheckL2(byte[] table, long l2, long l1Index, string name, bool active)
    {
        for (int j = 0; j < _g.L2Entries; j++)
        {
            var entry = _g.ExtendedL2
                ? new L2Entry(BigEndianTable.Get(table, j * 2), BigEndianTable.Get(table, j * 2 + 1))
                : new L2Entry(BigEndianTable.Get(table, j));
            if (entry.Raw == 0 && entry.Bitmap == 0) continue;
            long guest = ((l1Index << _g.L2Bits) + j) << _clusterBits;
            string? problem = entry.Problem(_g, _external);
            if (problem is not null)
            {
                _result.Corruption($"{name} L2 table 0x{l2:x} entry {j} (guest 0x{guest:x}) = 0x{entry.Raw:x16}: {problem}");
                continue;
            }
            if (entry.IsCompressed)
            {
                var d = entry.Compressed(_clusterBits);
                // The descriptor counts whole 512-byte sectors, so the last one may run past a file that is not padded.
                if (!InsideFile(d.HostOffset, 1))
                {
                    _result.Corruption($"{name} compressed cluster for guest 0x{guest:x} at 0x{d.HostOffset:x} (+{d.CompressedLength}) lies outside the file");
                    if (d.HostOffset >= 0) CountPastEnd(d.HostOffset >> _clusterBits);
                }
                else
                    Reference(d.HostOffset, d.CompressedLength, $"compressed cluster (guest 0x{guest:x})");
                if (active) _result.MappedGuestClusters++;
                continue;
            }
            if (!entry.HasHostCluster(_external)) continue;
            if (active) _result.MappedGuestClusters++;
            if (_external) continue; // data clusters live in the external data file, without refcounts
            long host = entry.HostOffset;
            if (!InsideFile(host, 1))
            {
                _result.Corruption($"{name} data cluster for guest 0x{guest:x} at 0x{host:x} lies past the end of the file ({_fileLength} bytes)");
                CountPastEnd(host >> _clusterBits);
                continue;
            }
            Reference(host, _clusterSize, $"data cluster (guest 0x{guest:x})");
            if (active) _l2Copied.Add((l2, j, host, entry.IsCopied));
        }
    }

    private void CheckSnapshots()
    {
        if (_header.SnapshotCount == 0) return;
        IReadOnlyList<Qcow2Snapshot> snapshots;
        try
        {
            snapshots = Qcow2SnapshotTable.Read(_file, _header, _fileLength);
        }
        catch (Qcow2FormatException e)
        {
            _result.Corruption($"snapshot table: {e.Message}");
            return;
        }
        Reference((long)_header.SnapshotsOffset, Qcow2SnapshotTable.SizeOf(snapshots), "snapshot table");
        foreach (var s in snapshots)
        {
            if (s.L1Size > Qcow2HeaderValidator.MaxL1Entries)
            {
                _result.Corruption($"snapshot \"{s.Name}\" l1_size {s.L1Size} too large");
                continue;
            }
            CheckL1((long)s.L1TableOffset, s.L1Size, $"snapshot \"{s.Name}\"", active: false);
        }
    }

    private void CheckBitmaps()
    {
        if (_header.Bitmaps is not { } ext || (_header.AutoclearFeatures & Qcow2AutoclearFeatures.Bitmaps) == 0) return;
        if (!InsideFile((long)ext.DirectoryOffset, (long)ext.DirectorySize))
        {
            _result.Corruption($"bitmap directory at 0x{ext.DirectoryOffset:x} lies outside the file");
            return;
        }
        Reference((long)ext.DirectoryOffset, (long)ext.DirectorySize, "bitmap directory");
        IReadOnlyList<Qcow2BitmapDirectoryEntry> entries;
        try
        {
            var directory = new byte[ext.DirectorySize];
            _file.Read((long)ext.DirectoryOffset, directory);
            entries = Qcow2BitmapDirectory.Parse(directory, ext.BitmapCount);
        }
        catch (Qcow2FormatException e)
        {
            _result.Corruption($"bitmap directory: {e.Message}");
            return;
        }
        foreach (var bitmap in entries)
        {
            long tableOffset = (long)bitmap.BitmapTableOffset;
            if (bitmap.BitmapTableSize == 0) continue;
            if ((tableOffset & (_clusterSize - 1)) != 0 || !InsideFile(tableOffset, bitmap.BitmapTableSize * 8L))
            {
                _result.Corruption($"bitmap \"{bitmap.Name}\" table at 0x{tableOffset:x} is unaligned or outside the file");
                continue;
            }
            Reference(tableOffset, bitmap.BitmapTableSize * 8L, $"bitmap \"{bitmap.Name}\" table");
            foreach (ulong raw in BigEndianTable.Read(_file, tableOffset, (int)bitmap.BitmapTableSize))
            {
                long data = (long)(raw & L1Entry.OffsetMask);
                if (data != 0) Reference(data, _clusterSize, $"bitmap \"{bitmap.Name}\" data cluster");
            }
        }
    }

    private ulong[] _table = [];

    private void CheckRefcountStructure()
    {
        long offset = (long)_header.RefcountTableOffset;
        int clusters = (int)_header.RefcountTableClusters;
        Reference(offset, (long)clusters << _clusterBits, "refcount table", structure: true);
        _table = BigEndianTable.Read(_file, offset, clusters * (_clusterSize / 8));
        for (int t = 0; t < _table.Length; t++)
        {
            long block = (long)_table[t];
            if (block == 0) continue;
            if ((block & (_clusterSize - 1)) != 0 || !InsideFile(block, _clusterSize))
            {
                _result.Corruption($"refcount table entry {t}: refcount block at 0x{block:x} is unaligned or outside the file");
                _table[t] = 0;
                continue;
            }
            Reference(block, _clusterSize, "refcount block", structure: true);
        }
    }

    private void CompareRefcounts()
    {
        _onDisk = new uint[_fileClusters];
        var block = new byte[_clusterSize];
        int entries = _g.RefcountBlockEntries;
        long covered = (long)_table.Length * entries;
        for (long t = 0; t < _table.Length; t++)
        {
            long blockOffset = (long)_table[t];
            long first = t * entries;
            if (first >= _fileClusters && blockOffset == 0) break;
            if (blockOffset != 0) _file.Read(blockOffset, block);
            for (int i = 0; i < entries; i++)
            {
                long c = first + i;
                ulong refcount = blockOffset == 0 ? 0 : RefcountBlockCodec.Get(block, i, _g.RefcountOrder);
                uint references = References(c);
                if (c < _fileClusters) _onDisk[c] = (uint)Math.Min(refcount, uint.MaxValue);
                else if (refcount <= references) continue; // a reference past the end was reported where it was found
                if (refcount < references)
                    _result.Corruption($"cluster {c} (0x{c << _clusterBits:x}): refcount={refcount} reference={references}");
                else if (refcount > references)
                {
                    _result.Leak($"Leaked cluster {c} refcount={refcount} reference={references}");
                    _leaked.Add(c);
                }
            }
        }
        for (long c = covered; c < _fileClusters; c++)
            if (_refs[c] != 0)
                _result.Corruption($"cluster {c} (0x{c << _clusterBits:x}): referenced {_refs[c]} times but no refcount block covers it");
    }

    private void CheckCopiedFlags()
    {
        foreach (var (index, l2, copied) in _l1Copied)
            if ((_onDisk[l2 >> _clusterBits] == 1) != copied)
                _result.Corruption($"OFLAG_COPIED L2 table: L1 entry {index} -> 0x{l2:x} has COPIED={copied} but refcount={_onDisk[l2 >> _clusterBits]}");
        foreach (var (table, index, host, copied) in _l2Copied)
            if ((_onDisk[host >> _clusterBits] == 1) != copied)
                _result.Corruption($"OFLAG_COPIED data cluster: L2 table 0x{table:x} entry {index} -> 0x{host:x} has COPIED={copied} but refcount={_onDisk[host >> _clusterBits]}");
    }

    // ---- Repair ---------------------------------------------------------------------------------------------

    /// <summary>Lowers the refcount of every leaked cluster to its reference count, in place.</summary>
    public void RepairLeaks()
    {
        var block = new byte[_clusterSize];
        int entries = _g.RefcountBlockEntries;
        long current = -1;
        foreach (long c in _leaked)
        {
            long t = c / entries;
            if (t != current)
            {
                if (current >= 0) _file.Write((long)_table[current], block);
                current = t;
                _file.Read((long)_table[t], block);
            }
            RefcountBlockCodec.Set(block, (int)(c % entries), _g.RefcountOrder, References(c));
        }
        if (current >= 0) _file.Write((long)_table[current], block);
        _file.Flush();
    }

    /// <summary>
    /// Writes a new refcount structure (blocks, then table) after the end of the file holding exactly the references
    /// counted (the old structure becomes free space), points the header at it, fixes COPIED flags, clears the
    /// dirty bit. Each step is made durable before the next depends on it.
    /// </summary>
    public void RebuildRefcounts()
    {
        var counts = (uint[])_refs.Clone();
        foreach (long c in _structureClusters) counts[c]--;
        int entries = _g.RefcountBlockEntries;
        int perTableCluster = _clusterSize / 8;
        // Entries naming clusters past the end of a file cut short: their data is gone. A new structure written at
        // the end would grow the file over them (or sit on them), and they would then read as zeroes (or as the
        // refcounts) with nothing left to report it. Leave the image as it is and say what to do.
        if (_pastEnd.Count > 0)
            throw new Qcow2FormatException("L2 entries", $"{_pastEnd.Count} clusters from host 0x{_pastEnd.Keys.Min() << _clusterBits:x}",
                $"name clusters past the end of the file ({_fileLength} bytes; it was cut short) and their data is gone; the refcounts " +
                "are not rebuilt (nothing was written): recover what is left into a new image with nbdqcow recover");
        long start = _fileClusters;
        long blocks = 1, tableClusters = 1;
        while (true)
        {
            long total = start + blocks + tableClusters;
            long neededBlocks = (total + entries - 1) / entries;
            long neededTable = (neededBlocks + perTableCluster - 1) / perTableCluster;
            if (neededBlocks == blocks && neededTable == tableClusters) break;
            blocks = neededBlocks;
            tableClusters = neededTable;
        }
        if (tableClusters * _clusterSize > Qcow2HeaderValidator.MaxRefcountTableBytes)
            throw new Qcow2FormatException("refcount table", tableClusters, "rebuilt table would be too large");
        long areaEnd = start + blocks + tableClusters;
        ulong max = RefcountBlockCodec.MaxValue(_g.RefcountOrder);
        var buffer = new byte[_clusterSize];
        for (long b = 0; b < blocks; b++)
        {
            Array.Clear(buffer);
            for (int i = 0; i < entries; i++)
            {
                long c = b * entries + i;
                ulong value = c < _fileClusters ? counts[c] : c >= start && c < areaEnd ? 1UL : 0UL;
                RefcountBlockCodec.Set(buffer, i, _g.RefcountOrder, Math.Min(value, max));
            }
            _file.Write((start + b) << _clusterBits, buffer);
        }
        long tableOffset = (start + blocks) << _clusterBits;
        for (long t = 0; t < tableClusters; t++)
        {
            Array.Clear(buffer);
            for (int i = 0; i < perTableCluster; i++)
            {
                long b = t * perTableCluster + i;
                if (b < blocks) BinaryPrimitives.WriteUInt64BigEndian(buffer.AsSpan(i * 8), (ulong)((start + b) << _clusterBits));
            }
            _file.Write(tableOffset + (t << _clusterBits), buffer);
        }
        _file.Flush(); // new structure durable before the header points at it
        Span<byte> field = stackalloc byte[12];
        BinaryPrimitives.WriteUInt64BigEndian(field, (ulong)tableOffset);
        BinaryPrimitives.WriteUInt32BigEndian(field[8..], (uint)tableClusters);
        _file.Write(48, field);
        _file.Flush();
        _header.RefcountTableOffset = (ulong)tableOffset;
        _header.RefcountTableClusters = (uint)tableClusters;

        // COPIED flags from the rebuilt refcounts.
        var table = new byte[_clusterSize];
        foreach (var group in _l2Copied.GroupBy(e => e.Table))
        {
            _file.Read(group.Key, table);
            bool changed = false;
            foreach (var (_, index, host, copied) in group)
            {
                bool want = counts[host >> _clusterBits] == 1;
                if (want == copied) continue;
                int slot = _g.ExtendedL2 ? index * 2 : index;
                ulong raw = BigEndianTable.Get(table, slot);
                BigEndianTable.Set(table, slot, want ? raw | L2Entry.CopiedFlag : raw & ~L2Entry.CopiedFlag);
                changed = true;
            }
            if (changed) _file.Write(group.Key, table);
        }
        Span<byte> entry = stackalloc byte[8];
        foreach (var (index, l2, copied) in _l1Copied)
        {
            bool want = counts[l2 >> _clusterBits] == 1;
            if (want == copied) continue;
            long at = (long)_header.L1TableOffset + index * 8;
            _file.Read(at, entry);
            ulong raw = BinaryPrimitives.ReadUInt64BigEndian(entry);
            BinaryPrimitives.WriteUInt64BigEndian(entry, want ? raw | L1Entry.CopiedFlag : raw & ~L1Entry.CopiedFlag);
            _file.Write(at, entry);
        }
        _file.Flush();
        ClearIncompatibleBits(Qcow2IncompatibleFeatures.Dirty);
    }

    /// <summary>Clears incompatible feature bits in the header (v3), durably.</summary>
    public void ClearIncompatibleBits(Qcow2IncompatibleFeatures bits)
    {
        if (_header.Version < 3 || (_header.IncompatibleFeatures & bits) == 0) return;
        var features = _header.IncompatibleFeatures & ~bits;
        Span<byte> field = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64BigEndian(field, (ulong)features);
        _file.Write(72, field);
        _file.Flush();
        _header.IncompatibleFeatures = features;
    }
}
