namespace NbdQcow.Config;

/// <summary>What an export does when a write, zero, trim or flush fails on the host (qemu's werror).</summary>
public enum WriteErrorPolicy
{
    /// <summary>The error goes to the client at once (qemu werror=report).</summary>
    Report,
    /// <summary>Out-of-space errors (ENOSPC, EDQUOT) are held and retried; others reported (qemu werror=enospc).</summary>
    Enospc,
    /// <summary>Every host error is held and retried (qemu has no such werror; closest is rerror/werror=stop plus cont).</summary>
    Retry,
    /// <summary>On a host error the export stops taking writes until a probe finds the storage working (qemu werror=stop).</summary>
    Stop,
}
