namespace NbdQcow.Config;

/// <summary>What an export does when a read fails on the host (qemu's rerror).</summary>
public enum ReadErrorPolicy
{
    /// <summary>The error goes to the client at once (qemu rerror=report).</summary>
    Report,
    /// <summary>Every host error is held and retried until it succeeds or the retry timeout passes.</summary>
    Retry,
}
