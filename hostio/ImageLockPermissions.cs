namespace NbdQcow.HostIo;

/// <summary>
/// qemu's block permissions (BLK_PERM_* of include/block/block-common.h, qemu 7.2), whose bits number the lock bytes
/// of <see cref="ImageLock"/>: byte 100 + bit for a permission held, byte 200 + bit for one not shared with others.
/// </summary>
[Flags]
public enum ImageLockPermissions
{
    None = 0,
    /// <summary>Reads see a consistent image (bit 0: bytes 100 and 200).</summary>
    ConsistentRead = 0x01,
    /// <summary>Changes the visible contents (bit 1: bytes 101 and 201).</summary>
    Write = 0x02,
    /// <summary>Writes that leave the visible contents unchanged (bit 2: bytes 102 and 202).</summary>
    WriteUnchanged = 0x04,
    /// <summary>Changes the size (bit 3: bytes 103 and 203).</summary>
    Resize = 0x08,
    All = ConsistentRead | Write | WriteUnchanged | Resize,
}
