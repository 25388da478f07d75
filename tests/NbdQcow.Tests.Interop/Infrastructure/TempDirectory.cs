namespace NbdQcow.Tests.Interop.Infrastructure;

/// <summary>A unique temporary folder for one test, removed with everything in it on dispose.</summary>
public sealed class TempDirectory : IDisposable
{
    public TempDirectory(string purpose = "test")
    {
        // Short names: Unix socket paths must stay under 108 bytes.
        Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(),
            $"nbdqcow-it-{purpose}-{Guid.NewGuid().ToString("N")[..12]}");
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
