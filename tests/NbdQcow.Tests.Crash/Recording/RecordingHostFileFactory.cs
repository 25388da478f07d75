using NbdQcow.HostIo;

namespace NbdQcow.Tests.Crash.Recording;

/// <summary>Opens real host files wrapped in <see cref="RecordingHostFile"/>; remembers each file's content at first open.</summary>
public sealed class RecordingHostFileFactory(HostFileLog log, HostFileFactory? engine = null)
{
    public HostFileLog Log => log;

    public IHostFile Open(string path, HostFileOptions options)
    {
        var fullPath = Path.GetFullPath(path);
        var initial = File.Exists(fullPath) ? File.ReadAllBytes(fullPath) : null;
        var id = log.AddFile(fullPath, initial);
        return new RecordingHostFile((engine ?? HostFile.Open)(fullPath, options), log, id);
    }
}
