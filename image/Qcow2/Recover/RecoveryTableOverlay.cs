namespace NbdQcow.Image.Qcow2.Recover;

/// <summary>
/// The history sources' table writes: those not yet in place are applied in sequence order over table bytes read from
/// the damaged file, so a table is seen as the newest history says it is; all of them answer which L2 tables an L1
/// slot ever held.
/// </summary>
internal sealed class RecoveryTableOverlay
{
    private readonly List<(RecoveryTableWrite Write, string Source)> _writes = new();

    public RecoveryTableOverlay(IReadOnlyList<IRecoveryHistorySource> sources, RecoveryReport report)
    {
        foreach (var source in sources)
        {
            long count = 0;
            foreach (var write in source.ReadTableWrites())
            {
                if (write.HostOffset < 0 || write.Bytes.Length == 0)
                {
                    report.Damage("history", $"{source.Name}: write seq {write.Sequence} at {write.HostOffset} (+{write.Bytes.Length}) skipped: empty or negative offset");
                    continue;
                }
                _writes.Add((write, source.Name));
                count++;
            }
            report.Notes.Add($"history source {source.Name}: {count} table writes (those not yet in place laid over the file in sequence order; all used as placement evidence)");
        }
        _writes.Sort((a, b) => a.Write.Sequence.CompareTo(b.Write.Sequence));
    }

    public bool IsEmpty => _writes.Count == 0;

    /// <summary>Applies every write overlapping [offset, offset + bytes.Length) that is not yet in place, oldest first.</summary>
    public void Apply(long offset, Span<byte> bytes)
    {
        long end = offset + bytes.Length;
        foreach (var (write, _) in _writes)
        {
            if (write.InPlace) continue;
            long wStart = write.HostOffset, wEnd = write.HostOffset + write.Bytes.Length;
            long from = Math.Max(offset, wStart), to = Math.Min(end, wEnd);
            if (from >= to) continue;
            write.Bytes.Span.Slice((int)(from - wStart), (int)(to - from)).CopyTo(bytes[(int)(from - offset)..]);
        }
    }

    /// <summary>Every (slot, L2 offset, sequence, source) an L1 table at <paramref name="l1Offset"/> ever held per the history.</summary>
    public IEnumerable<(long Slot, long L2Offset, long Sequence, string Source)> L1Values(long l1Offset, long l1Entries)
    {
        long l1End = l1Offset + l1Entries * 8;
        foreach (var (write, source) in _writes)
        {
            long wStart = write.HostOffset, wEnd = write.HostOffset + write.Bytes.Length;
            long from = Math.Max(l1Offset, wStart), to = Math.Min(l1End, wEnd);
            // Whole entries only: a write that cuts an entry in two says nothing certain about it.
            long firstSlot = (from - l1Offset + 7) / 8, endSlot = (to - l1Offset) / 8;
            for (long slot = firstSlot; slot < endSlot; slot++)
            {
                var at = (int)(l1Offset + slot * 8 - wStart);
                ulong raw = System.Buffers.Binary.BinaryPrimitives.ReadUInt64BigEndian(write.Bytes.Span[at..]);
                var entry = new Format.L1Entry(raw);
                if (entry.IsAllocated && entry.ReservedBits == 0)
                    yield return (slot, entry.L2TableOffset, write.Sequence, source);
            }
        }
    }
}
