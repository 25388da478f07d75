namespace NbdQcow.Image.Qcow2.Recover;

/// <summary>One table write from a history source: <paramref name="Bytes"/> written at <paramref name="HostOffset"/> of the image.</summary>
/// <param name="Sequence">Higher is newer; writes are applied in this order.</param>
public sealed record RecoveryTableWrite(long Sequence, long HostOffset, ReadOnlyMemory<byte> Bytes);
