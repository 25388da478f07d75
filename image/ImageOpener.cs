namespace NbdQcow.Image;

/// <summary>Opens an image file as a block device, choosing the format node by probing the header.</summary>
public static class ImageOpener
{
    public static IBlockDevice Open(string path, ImageOpenOptions options)
    {
        // Raw and qcow2 format nodes plug in here (foundation and qcow2 issues).
        throw new NotImplementedException($"opening {path}: no format node yet");
    }
}
