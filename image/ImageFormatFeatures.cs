namespace NbdQcow.Image;

/// <summary>What an image format can do, as declared by its <see cref="ImageFormat"/>; callers ask these instead of its name.</summary>
[Flags]
public enum ImageFormatFeatures
{
    None = 0,
    /// <summary>Served read-write (otherwise every export of it is read-only).</summary>
    Writable = 1 << 0,
    /// <summary><see cref="ImageFormat.Create"/> makes a new, empty image (serve --create).</summary>
    Create = 1 << 1,
    /// <summary>Keeps metadata that the write-ahead journal can protect (--journal).</summary>
    Journal = 1 << 2,
    /// <summary>Zeroes any range quickly whatever the file system (FAST_ZERO is advertised before the image is opened).</summary>
    AlwaysFastZero = 1 << 3,
    /// <summary>Has internal snapshots, persistent bitmaps and a consistency check (the qcow2 tools).</summary>
    Qcow2Tools = 1 << 4,
}
