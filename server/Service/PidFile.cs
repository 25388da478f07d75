using System.Globalization;

namespace NbdQcow.Server.Service;

/// <summary>--pid-file: written once the server listens, removed at exit when it still names this process.</summary>
internal sealed class PidFile(string path)
{
    public string Path { get; } = System.IO.Path.GetFullPath(path);

    private readonly string _content = Environment.ProcessId.ToString(CultureInfo.InvariantCulture) + "\n";

    /// <summary>Writes the pid through a temporary file and a rename, so a reader never sees a partial number.</summary>
    public void Write()
    {
        var temporary = Path + ".tmp" + Environment.ProcessId.ToString(CultureInfo.InvariantCulture);
        File.WriteAllText(temporary, _content);
        File.Move(temporary, Path, overwrite: true);
    }

    public void Remove()
    {
        try
        {
            if (File.Exists(Path) && File.ReadAllText(Path) == _content)
            {
                File.Delete(Path);
            }
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            // The file was ours to write, not ours to fight over at exit.
        }
    }
}
