namespace NbdQcow.Image.Qcow2.Recover;

/// <summary>
/// What `nbdqcow recover` exits with, in the spirit of `qemu-img check` (0 only when nothing was wrong; a distinct
/// code per kind of outcome), keeping the project's rule that 2 means bad usage.
/// </summary>
public static class RecoveryExitCode
{
    /// <summary>Nothing was damaged: everything the image maps was copied, nothing found needing recovery.</summary>
    public const int Clean = 0;
    /// <summary>Damage was found and every piece of guest data it touched was brought back in place.</summary>
    public const int RecoveredCompletely = 1;
    /// <summary>Bad usage or unusable input: nothing was written.</summary>
    public const int Unusable = 2;
    /// <summary>Recovered with losses: some data went to lost+found (not in place) or could not be read at all.</summary>
    public const int RecoveredWithLosses = 3;
}
