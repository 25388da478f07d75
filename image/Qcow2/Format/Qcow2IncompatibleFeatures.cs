namespace NbdQcow.Image.Qcow2.Format;

/// <summary>Incompatible feature bits (header offset 72): an implementation must refuse bits it does not know.</summary>
[Flags]
public enum Qcow2IncompatibleFeatures : ulong
{
    None = 0,
    /// <summary>Refcounts may be stale (lazy_refcounts); rebuild them before writing.</summary>
    Dirty = 1UL << 0,
    /// <summary>Metadata is known to be corrupt; only read-only access is allowed.</summary>
    Corrupt = 1UL << 1,
    /// <summary>Guest data lives in an external data file (header extension 0x44415441).</summary>
    ExternalDataFile = 1UL << 2,
    /// <summary>The compression_type header field is in use (non-zlib).</summary>
    CompressionType = 1UL << 3,
    /// <summary>L2 entries are 128 bits with subcluster allocation/zero bitmaps.</summary>
    ExtendedL2 = 1UL << 4,
    /// <summary>
    /// nbdqcow's own bit: the sidecar metadata journal (IMAGE.journal) holds committed table changes not yet written
    /// in place, so the tables in the file may be stale. Set while such changes exist; qemu refuses the image, and
    /// nbdqcow replays the journal on open. A high bit, far from the ones the qcow2 spec allocates from the bottom.
    /// </summary>
    NbdqcowJournal = 1UL << 40,
}
