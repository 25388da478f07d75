namespace NbdQcow.Fuzz;

/// <summary>
/// A per-process folder in /dev/shm (memory-backed) for targets whose code under test opens files by path
/// (recover, journal replay). Emptied between iterations.
/// </summary>
public static class ScratchFolder
{
    private static readonly Lazy<string> Root = new(() =>
    {
        string baseDir = Directory.Exists("/dev/shm") ? "/dev/shm" : Path.GetTempPath();
        string path = Path.Combine(baseDir, $"nbdqcow-fuzz-{Environment.ProcessId}");
        Directory.CreateDirectory(path);
        AppDomain.CurrentDomain.ProcessExit += (_, _) => TryDelete(path);
        return path;
    });

    /// <summary>An empty folder for one iteration.</summary>
    public static string Fresh()
    {
        string path = Path.Combine(Root.Value, "run");
        TryDelete(path);
        Directory.CreateDirectory(path);
        return path;
    }

    private static void TryDelete(string path)
    {
        try
        {
            if (Directory.Exists(path)) Directory.Delete(path, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
