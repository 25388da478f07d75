using System.Text;
using System.Text.Json;

namespace NbdQcow.Image.Qcow2.Recover;

/// <summary>The recovery report as text for people (stdout summary) and as one JSON object for machines.</summary>
public static class RecoveryReportFormatter
{
    public static string ToText(RecoveryReport r)
    {
        var t = new StringBuilder();
        t.AppendLine($"Recovered {r.View} view of {r.ImagePath} into {r.OutputPath} ({r.OutputFormat.ToString().ToLowerInvariant()}, virtual size {r.VirtualSize} bytes, {r.ClusterSize}-byte clusters).");
        t.AppendLine($"  data clusters:        {r.DataClustersRecovered} ({r.CompressedClustersRecovered} more were compressed), {r.ZeroClustersRecovered} zero clusters, {r.BytesWritten} bytes of data written");
        t.AppendLine($"  from orphan L2 tables: {r.ClustersFromOrphanTables} clusters ({r.OrphanL2TablesPlaced} of {r.OrphanL2Tables} orphan tables placed)");
        if (r.SlotsFilledFromSnapshots > 0)
            t.AppendLine($"  filled from snapshots: {r.ClustersFilledFromSnapshots} clusters in {r.SlotsFilledFromSnapshots} L1 slots (older data)");
        t.AppendLine($"  host file scan:        {r.ClustersScanned} unreferenced non-hole clusters read: {r.OrphanL2Tables} orphan L2 tables, {r.OrphanDataClusters} orphan data, {r.StaleRefcountBlocks} stale refcount blocks, {r.StaleMetadataTables} stale table copies");
        if (r.CheckSummary is not null) t.AppendLine($"  check of the damaged image (read-only): {r.CheckSummary}");
        foreach (var d in r.OrphanDecisions)
            t.AppendLine(d.PlacedSlot is { } slot
                ? $"PLACED orphan L2 table 0x{d.HostOffset:x} ({d.DataClusters} data clusters) at L1 slot {slot}: {d.Reason}"
                : d.CandidateSlotCount == 0 && d.Reason.StartsWith("stale", StringComparison.Ordinal) ? $"STALE orphan L2 table 0x{d.HostOffset:x}: {d.Reason}"
                : $"NOT PLACED orphan L2 table 0x{d.HostOffset:x} ({d.DataClusters} data clusters), candidate slots [{string.Join(", ", d.CandidateSlots)}{(d.CandidateSlotCount > d.CandidateSlots.Count ? ", ..." : "")}]: {d.Reason}");
        foreach (var range in r.Ranges)
            t.AppendLine($"RANGE 0x{range.GuestOffset:x}+0x{range.Length:x} {range.Outcome}: {range.Evidence}");
        if (r.RangeCount > r.Ranges.Count) t.AppendLine($"... and {r.RangeCount - r.Ranges.Count} more ranges");
        foreach (var f in r.Findings) t.AppendLine(f.Kind == "conflict" ? $"CONFLICT: {f.Message}" : $"DAMAGE {f.Kind}: {f.Message}");
        if (r.FindingCount > r.Findings.Count) t.AppendLine($"... and {r.FindingCount - r.Findings.Count} more damage messages");
        foreach (var n in r.Notes) t.AppendLine($"NOTE {n}");
        if (r.LostAndFoundPath is not null)
            t.AppendLine($"LOST+FOUND: {r.LostClusters} clusters nothing could place were saved to {r.LostAndFoundPath}/ (index.json names each one's origin and candidate guest offsets)");
        t.AppendLine(r.ExitCode switch
        {
            RecoveryExitCode.Clean => "Result (exit 0): everything the image maps was recovered; no damage found.",
            RecoveryExitCode.RecoveredCompletely => $"Result (exit 1): damage found ({r.FindingCount} findings) and recovered completely: every guest cluster it touched is back in place" +
                (r.FreedLeftovers > 0 ? $"; {r.FreedLeftovers} freed leftovers kept in lost+found." : "."),
            _ => $"Result (exit 3): recovered with losses: {r.LostGuestClusters} guest clusters are not in place ({r.LostClusters} clusters in lost+found, " +
                $"{r.ConflictingClusters} conflicts); {r.FindingCount} damage findings; everything that could be placed was written.",
        });
        return t.ToString();
    }

    public static string ToJson(RecoveryReport r)
    {
        var stream = new MemoryStream();
        using (var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true }))
        {
            w.WriteStartObject();
            w.WriteString("image", Path.GetFullPath(r.ImagePath));
            w.WriteString("output", Path.GetFullPath(r.OutputPath));
            w.WriteString("output-format", r.OutputFormat.ToString().ToLowerInvariant());
            w.WriteString("view", r.View);
            w.WriteNumber("virtual-size", r.VirtualSize);
            w.WriteNumber("cluster-size", r.ClusterSize);
            w.WriteNumber("host-file-length", r.HostFileLength);
            w.WriteNumber("exit-code", r.ExitCode);
            if (r.CheckSummary is not null) w.WriteString("check", r.CheckSummary);
            w.WriteStartObject("recovered");
            w.WriteNumber("data-clusters", r.DataClustersRecovered);
            w.WriteNumber("compressed-clusters", r.CompressedClustersRecovered);
            w.WriteNumber("zero-clusters", r.ZeroClustersRecovered);
            w.WriteNumber("bytes-written", r.BytesWritten);
            w.WriteNumber("clusters-from-orphan-tables", r.ClustersFromOrphanTables);
            w.WriteNumber("clusters-filled-from-snapshots", r.ClustersFilledFromSnapshots);
            w.WriteNumber("slots-filled-from-snapshots", r.SlotsFilledFromSnapshots);
            w.WriteEndObject();
            w.WriteStartObject("scan");
            w.WriteNumber("clusters-read", r.ClustersScanned);
            w.WriteNumber("orphan-l2-tables", r.OrphanL2Tables);
            w.WriteNumber("orphan-l2-tables-placed", r.OrphanL2TablesPlaced);
            w.WriteNumber("orphan-data-clusters", r.OrphanDataClusters);
            w.WriteNumber("stale-refcount-blocks", r.StaleRefcountBlocks);
            w.WriteNumber("stale-table-copies", r.StaleMetadataTables);
            w.WriteNumber("stale-l2-tables", r.StaleL2Tables);
            w.WriteNumber("compressed-streams-found", r.CompressedStreamsFound);
            w.WriteEndObject();
            w.WriteStartArray("orphan-l2-tables");
            foreach (var d in r.OrphanDecisions)
            {
                w.WriteStartObject();
                w.WriteNumber("host-offset", d.HostOffset);
                w.WriteNumber("data-clusters", d.DataClusters);
                if (d.PlacedSlot is { } slot) w.WriteNumber("placed-slot", slot);
                else w.WriteNull("placed-slot");
                w.WriteStartArray("candidate-slots");
                foreach (long s in d.CandidateSlots) w.WriteNumberValue(s);
                w.WriteEndArray();
                w.WriteNumber("candidate-slot-count", d.CandidateSlotCount);
                w.WriteString("reason", d.Reason);
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteStartArray("ranges");
            foreach (var range in r.Ranges)
            {
                w.WriteStartObject();
                w.WriteNumber("guest-offset", range.GuestOffset);
                w.WriteNumber("length", range.Length);
                w.WriteString("outcome", range.Outcome);
                w.WriteString("evidence", range.Evidence);
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteNumber("range-count", r.RangeCount);
            w.WriteStartObject("lost-and-found");
            if (r.LostAndFoundPath is not null) w.WriteString("path", Path.GetFullPath(r.LostAndFoundPath));
            else w.WriteNull("path");
            w.WriteNumber("clusters", r.LostClusters);
            w.WriteNumber("freed-leftovers", r.FreedLeftovers);
            w.WriteNumber("conflicts", r.ConflictingClusters);
            w.WriteNumber("guest-clusters-not-in-place", r.LostGuestClusters);
            w.WriteEndObject();
            w.WriteNumber("damage-count", r.FindingCount);
            w.WriteStartArray("damage");
            foreach (var f in r.Findings)
            {
                w.WriteStartObject();
                w.WriteString("kind", f.Kind);
                w.WriteString("message", f.Message);
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteStartArray("notes");
            foreach (var n in r.Notes) w.WriteStringValue(n);
            w.WriteEndArray();
            w.WriteEndObject();
        }
        return Encoding.UTF8.GetString(stream.ToArray()) + "\n";
    }
}
