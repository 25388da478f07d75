using NbdQcow.Image.Qcow2.Format;

namespace NbdQcow.Image.Qcow2.Recover;

/// <summary>
/// Reads an L1 table tolerantly: its size is bounded (by what the virtual size needs and by the file), and each entry
/// is checked before it is believed (reserved bits, alignment, inside the file, not on other metadata, not a table
/// another slot of the same view already uses). Refused entries are reported and leave their slot empty.
/// </summary>
internal static class L1ViewReader
{
    /// <param name="countLosses">The view is the one recovered: an L2 table lost past the end of the file costs data.</param>
    public static L1View Read(DamagedImage image, string name, ulong l1Offset, ulong l1Size, long slots, DateTimeOffset? date, bool countLosses = false)
    {
        var l2 = new long[slots];
        var damaged = new bool[slots];
        var pastEnd = new bool[slots];
        long offset = (long)Math.Min(l1Offset, long.MaxValue);
        if (l1Size > (ulong)slots)
        {
            if (l1Size > Qcow2HeaderValidator.MaxL1Entries)
                image.Report.Damage("l1-entry", $"{name} L1 size {l1Size} is larger than qcow2 allows ({Qcow2HeaderValidator.MaxL1Entries}); only the {slots} entries the virtual size needs are read");
            l1Size = (ulong)slots; // entries past the virtual size map nothing
        }
        long entries = (long)l1Size;
        if (entries < slots)
            image.Report.Damage("l1-entry", $"{name} L1 table has {entries} entries, the virtual size needs {slots}; the rest read as unmapped");
        if (entries == 0)
            return new L1View(name, offset, l2, damaged, date);
        if (!image.IsPlausibleTable(offset, entries * 8))
        {
            // A table that runs past the end: keep the entries that are inside the file.
            if (offset > 0 && (offset & image.Geometry.ClusterOffsetMask) == 0 && offset < image.FileLength)
            {
                long inside = (image.FileLength - offset) / 8;
                image.Report.Damage("l1-entry", $"{name} L1 table at 0x{offset:x} ({entries} entries) runs past the end of the file; {inside} entries read");
                entries = inside;
            }
            else
            {
                image.Report.Damage("l1-entry", $"{name} L1 table at 0x{offset:x} is unaligned, on the header or outside the file; no mapping read from it");
                return new L1View(name, offset, l2, damaged, date);
            }
        }
        var raw = new byte[entries * 8];
        image.ReadTable(offset, raw);
        image.MarkMetadata(offset, entries * 8);
        var used = new HashSet<long>();
        for (long i = 0; i < entries; i++)
        {
            var entry = new L1Entry(BigEndianTable.Get(raw, (int)i));
            if (entry.Raw == 0) continue;
            string? problem = null;
            long table = entry.L2TableOffset;
            if (entry.ReservedBits != 0) problem = "reserved bits set";
            else if (table == 0) problem = "flags without an L2 table";
            else if (!image.IsPlausibleTable(table, image.Geometry.ClusterSize)) problem = $"L2 table at 0x{table:x} is unaligned, on the header or past the end of the file ({image.FileLength} bytes)";
            else if (image.Metadata.Get(image.ClusterOf(table))) problem = $"L2 table at 0x{table:x} lies on other metadata";
            else if (!used.Add(table)) problem = $"L2 table at 0x{table:x} is already used by another slot of this L1 table";
            if (problem is not null)
            {
                damaged[i] = true;
                string message = $"{name} L1 entry {i} = 0x{entry.Raw:x16}: {problem}; slot left unmapped";
                // A table past the end of the file is gone with its mappings; a table refused for other reasons may
                // still be found by the scan and placed, so only that is a loss for certain.
                if (table >= image.FileLength) pastEnd[i] = true;
                if (countLosses && table >= image.FileLength)
                {
                    image.Report.Loss("l1-entry", message);
                    image.Report.Range(i * image.Geometry.L2Coverage, image.Geometry.L2Coverage, "lost", message);
                }
                else image.Report.Damage("l1-entry", message);
                continue;
            }
            l2[i] = table;
        }
        return new L1View(name, offset, l2, damaged, date, pastEnd);
    }

    /// <summary>Marks the view's L2 tables as metadata (after all views are read, so tables shared between views are fine).</summary>
    public static void MarkTables(DamagedImage image, L1View view)
    {
        foreach (long table in view.L2Offsets)
            if (table != 0) image.MarkMetadata(table, image.Geometry.ClusterSize);
    }
}
