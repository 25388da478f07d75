using System.Globalization;
using NbdQcow.HostIo;

namespace NbdQcow.Server.Service;

/// <summary>--pid-file: written once the server listens, removed at exit when it still names this process.</summary>
internal sealed class PidFile(string path)
{
    public string Path { get; } = System.IO.Path.GetFullPath(path);

    private readonly string _content = Environment.ProcessId.ToString(CultureInfo.InvariantCulture) + "\n";

    /// <summary>Longest content an existing file may have and still be taken for a stale pid file.</summary>
    private const int MaxPidFileBytes = 32;

    /// <summary>
    /// Throws when something other than a pid file is in the way: the file is replaced once the server listens and
    /// deleted at exit, so a mistyped path (the image itself, a config file, a FIFO) would be lost. An empty file or
    /// one holding only a number (left by a server that was killed) may be replaced.
    /// </summary>
    public void EnsureReplaceable()
    {
        if (Directory.Exists(Path))
            throw new IOException($"--pid-file {Path} is a folder; refusing to replace it");
        if (!File.Exists(Path)) return;
        if (!HostPath.IsRegularFile(Path))
            throw new IOException($"--pid-file {Path} exists and is not a regular file; refusing to replace it");
        Span<byte> head = stackalloc byte[MaxPidFileBytes + 1];
        int length;
        using (var existing = File.OpenHandle(Path, FileMode.Open, FileAccess.Read))
            length = RandomAccess.Read(existing, head, 0);
        var content = head[..length].Trim("\n\r\t "u8);
        bool isPid = length <= MaxPidFileBytes && System.Buffers.Text.Utf8Parser.TryParse(content, out uint _, out int used) && used == content.Length;
        if (length > 0 && !isPid)
            throw new IOException($"--pid-file {Path} exists and is not a pid file (it holds more than a process id); refusing to replace it");
    }

    /// <summary>Writes the pid through a temporary file and a rename, so a reader never sees a partial number.</summary>
    public void Write()
    {
        EnsureReplaceable(); // again: an image created since the start (--create) may have taken the path
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
