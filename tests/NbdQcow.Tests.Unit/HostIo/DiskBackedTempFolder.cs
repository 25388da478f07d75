namespace NbdQcow.Tests.Unit.HostIo;

/// <summary>
/// A unique temp folder on a disk-backed file system (/var/tmp, not a possibly-tmpfs /tmp), so O_DIRECT,
/// fallocate and SEEK_DATA behave as on a real image store. Deleted on dispose.
/// </summary>
internal sealed class DiskBackedTempFolder : IDisposable
{
    public DiskBackedTempFolder()
    {
        var root = Directory.Exists("/var/tmp") ? "/var/tmp" : Path.GetTempPath();
        FolderPath = Path.Combine(root, "nbdqcow-unit-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(FolderPath);
    }

    public string FolderPath { get; }

    public string File(string name) => Path.Combine(FolderPath, name);

    public void Dispose()
    {
        try { Directory.Delete(FolderPath, recursive: true); } catch (IOException) { }
    }
}
