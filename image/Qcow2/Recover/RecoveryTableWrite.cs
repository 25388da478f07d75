namespace NbdQcow.Image.Qcow2.Recover;

/// <summary>One table write from a history source: <paramref name="Bytes"/> written at <paramref name="HostOffset"/> of the image.</summary>
/// <param name="Sequence">Higher is newer; writes are applied in this order.</param>
/// <param name="InPlace">
/// The source knows the write reached the image since (a journal transaction a checkpoint wrote in place). Such a
/// write is used only as evidence of which L2 table an L1 slot held, never laid over the file: the table in place
/// may be newer than the newest copy the source kept. Writes not in place (a journal's uncheckpointed tail) are
/// newer than the file and are laid over it.
/// </param>
public sealed record RecoveryTableWrite(long Sequence, long HostOffset, ReadOnlyMemory<byte> Bytes, bool InPlace = false);
