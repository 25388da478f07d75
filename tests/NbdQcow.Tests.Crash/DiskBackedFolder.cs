namespace NbdQcow.Tests.Crash;

/// <summary>Unique work folders on a disk-backed file system (/var/tmp), where O_DIRECT and fallocate behave as on an image store.</summary>
public static class DiskBackedFolder
{
    public static string Create(string prefix)
    {
        var root = Directory.Exists("/var/tmp") ? "/var/tmp" : Path.GetTempPath();
        var path = Path.Combine(root, $"nbdqcow-{prefix}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(path);
        return path;
    }
}
