namespace NbdQcow.HostIo;

/// <summary>How an image file is locked against other users (qemu and other nbdqcow processes).</summary>
public enum ImageLocking
{
    /// <summary>No locks: neither taken nor checked (the library default; the CLI turns locking on).</summary>
    Off,
    /// <summary>As qemu: a writer holds read/write/resize and shares neither write nor resize; a reader holds consistent read and shares no write.</summary>
    On,
    /// <summary>qemu's force-share (-U), for read-only users: hold consistent read, share everything.</summary>
    ForceShare,
}
