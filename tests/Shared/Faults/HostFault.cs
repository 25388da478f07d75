namespace NbdQcow.Tests.Faults;

/// <summary>What an injected failure looks like to the caller.</summary>
public enum HostFault
{
    /// <summary>The call fails with EIO, doing nothing.</summary>
    Eio,
    /// <summary>The call fails with ENOSPC, doing nothing.</summary>
    NoSpace,
    /// <summary>The call fails with EDQUOT (quota exceeded), doing nothing.</summary>
    QuotaExceeded,
    /// <summary>A write stores its first half, then fails with ENOSPC (pwrite returned short, the retry found no space).</summary>
    ShortWrite,
}
