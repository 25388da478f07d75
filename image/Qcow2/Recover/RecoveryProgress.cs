namespace NbdQcow.Image.Qcow2.Recover;

/// <summary>Where a recovery run is: a phase and how far through it (units are the phase's own: clusters or slots).</summary>
public readonly record struct RecoveryProgress(string Phase, long Done, long Total);
