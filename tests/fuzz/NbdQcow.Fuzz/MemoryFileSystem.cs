using NbdQcow.HostIo;

namespace NbdQcow.Fuzz;

/// <summary>
/// The files one fuzz iteration may open: the image under test and whatever it creates (journal, history).
/// A name the image points to that does not exist here (a backing or data file) fails as a missing file would.
/// </summary>
public sealed class MemoryFileSystem
{
    private readonly Dictionary<string, MemoryHostFile> _files = new(StringComparer.Ordinal);

    public void Add(string path, byte[] content) =>
        _files[System.IO.Path.GetFullPath(path)] = new MemoryHostFile(System.IO.Path.GetFullPath(path), content, readOnly: false);

    public IHostFile Open(string path, HostFileOptions options)
    {
        string full = System.IO.Path.GetFullPath(path);
        if (!_files.TryGetValue(full, out var file))
        {
            if (!options.Create) throw new FileNotFoundException($"{full}: no such file", full);
            file = new MemoryHostFile(full, [], readOnly: false);
            _files[full] = file;
        }
        return options.ReadOnly ? new ReadOnlyHostFile(file) : file;
    }
}
