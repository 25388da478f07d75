namespace NbdQcow.Image.Qcow2.Format;

/// <summary>The bitmaps header extension: where the bitmap directory is.</summary>
public sealed record Qcow2BitmapsExtension(uint BitmapCount, ulong DirectorySize, ulong DirectoryOffset)
{
    public const int Size = 24;
    /// <summary>qemu's limits (QCOW2_MAX_BITMAPS, QCOW2_MAX_BITMAP_DIRECTORY_SIZE).</summary>
    public const uint MaxBitmaps = 65535;
    public const ulong MaxDirectorySize = 1024UL * MaxBitmaps;
}
