namespace NbdQcow.Image.Qcow2.Recover;

/// <summary>
/// A source of metadata history for `recover`: table writes (L1 or L2 bytes at a host offset) each with a sequence
/// number, as a metadata journal keeps them. Recovery applies the writes in sequence order over what the image holds
/// on disk (a journal's writes not yet checkpointed are newer than the tables in place), and uses every L1 value a
/// write ever carried as evidence when it places an orphan L2 table. The format that produces these writes (the
/// `--journal` sidecar) lives elsewhere; this interface is the seam it plugs into.
/// </summary>
public interface IRecoveryHistorySource
{
    /// <summary>Names the source in the report (e.g. the journal file's path).</summary>
    string Name { get; }

    /// <summary>Every table write the source holds, in any order. Damaged records are the source's to skip.</summary>
    IEnumerable<RecoveryTableWrite> ReadTableWrites();
}
