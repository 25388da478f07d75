namespace NbdQcow.Tests.Shared;

/// <summary>
/// A unique temporary folder for one test, removed with everything in it on dispose. <c>diskBacked</c> puts it
/// under /var/tmp instead of a possibly-tmpfs /tmp, where O_DIRECT, fallocate and SEEK_DATA behave as on a real
/// image store.
/// </summary>
public sealed class TempDirectory : IDisposable
{
    public TempDirectory(string purpose = "test", bool diskBacked = false)
    {
        string root = diskBacked && Directory.Exists("/var/tmp") ? "/var/tmp" : System.IO.Path.GetTempPath();
        // Short names: Unix socket paths must stay under 108 bytes.
        Path = System.IO.Path.Combine(root, $"nbdqcow-{purpose}-{Guid.NewGuid().ToString("N")[..12]}");
        Directory.CreateDirectory(Path);
    }

    public string Path { get; }

    /// <summary>The full path of a file (or socket) named <paramref name="name"/> inside this folder.</summary>
    public string File(string name) => System.IO.Path.Combine(Path, name);

    public void Dispose()
    {
        try
        {
            Directory.Delete(Path, recursive: true);
        }
        catch (IOException)
        {
            // A process we started may still hold a file open for a moment; the OS temp cleaner takes the rest.
        }
        catch (UnauthorizedAccessException)
        {
        }
    }
}
