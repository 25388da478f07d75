namespace NbdQcow.HostIo;

/// <summary>The permissions a user of an image holds and those it refuses to share, as qemu computes them for a file node.</summary>
public readonly record struct ImageLockSet(ImageLockPermissions Held, ImageLockPermissions Unshared)
{
    /// <summary>What qemu-nbd, qemu-io or a VM writing a qcow2 image take on its file (bytes 100, 101, 103, 201, 203).</summary>
    public static ImageLockSet Writer { get; } = new(
        ImageLockPermissions.ConsistentRead | ImageLockPermissions.Write | ImageLockPermissions.Resize,
        ImageLockPermissions.Write | ImageLockPermissions.Resize);

    /// <summary>What qemu-img info/check/compare or a read-only qemu-nbd take on a qcow2 file (bytes 100, 201, 203).</summary>
    public static ImageLockSet Reader { get; } = new(
        ImageLockPermissions.ConsistentRead,
        ImageLockPermissions.Write | ImageLockPermissions.Resize);

    /// <summary>A reader with force-share (qemu's -U), and what an inactivated qemu keeps: byte 100 only.</summary>
    public static ImageLockSet SharedReader { get; } = new(ImageLockPermissions.ConsistentRead, ImageLockPermissions.None);

    /// <summary>The set for a policy and access mode, or null when locking is off.</summary>
    public static ImageLockSet? For(ImageLocking locking, bool readOnly) => locking switch
    {
        ImageLocking.Off => null,
        ImageLocking.On => readOnly ? Reader : Writer,
        ImageLocking.ForceShare when readOnly => SharedReader,
        ImageLocking.ForceShare => throw new ArgumentException(
            "force-share is for read-only users only (as qemu's -U): a writer must not let others write the image at the same time"),
        _ => throw new ArgumentOutOfRangeException(nameof(locking), locking, null),
    };
}
