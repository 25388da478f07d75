namespace NbdQcow.HostIo;

/// <summary>
/// Another process (qemu, or another nbdqcow) holds the image in a way that conflicts with the access asked for.
/// An <see cref="IOException"/>, so every command reports it as an open failure.
/// </summary>
public sealed class ImageLockConflictException(string path, string message) : IOException(message)
{
    public string ImagePath { get; } = path;
}
