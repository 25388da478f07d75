using NbdQcow.HostIo;

namespace NbdQcow.Image.Raw;

/// <summary>Creates a sparse raw image (for `serve --create SIZE`); never overwrites an existing file.</summary>
public static class RawImageCreator
{
    public static void Create(string path, long size)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(size);
        FileStream stream;
        try
        {
            stream = new FileStream(path, FileMode.CreateNew, FileAccess.Write, FileShare.None);
        }
        catch (IOException e) when (File.Exists(path))
        {
            throw new IOException($"{path} already exists; refusing to overwrite it", e);
        }
        using (stream)
        {
            stream.SetLength(size);
            stream.Flush(flushToDisk: true);
        }
        HostDirectory.SyncParentOf(path);
    }
}
