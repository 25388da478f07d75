using NbdQcow.Tests.Crash.Recording;

namespace NbdQcow.Tests.Crash.States;

/// <summary>Materialises crash states as real files (same file names, in a folder of their own).</summary>
public sealed class CrashImageBuilder(IReadOnlyList<RecordedFile> files)
{
    /// <summary>Every recorded file with the durable calls of <paramref name="point"/> applied.</summary>
    public Dictionary<int, FileContent> BuildBase(CrashPoint point)
    {
        var contents = new Dictionary<int, FileContent>();
        foreach (var file in files) contents[file.Id] = new FileContent(file.InitialContent);
        foreach (var e in point.Durable) contents[e.FileId].Apply(e);
        return contents;
    }

    /// <summary>Writes the files of <paramref name="state"/> into <paramref name="folder"/>; returns the path per file id.</summary>
    public Dictionary<int, string> Write(CrashPoint point, CrashState state, Dictionary<int, FileContent> baseContents, string folder)
    {
        var contents = new Dictionary<int, FileContent>();
        foreach (var (id, content) in baseContents) contents[id] = content.Clone();
        for (var i = 0; i < point.Volatile.Count; i++)
        {
            if (!state.Included[i]) continue;
            var e = point.Volatile[i];
            contents[e.FileId].Apply(e, i == state.TornIndex ? state.TornBlocks : null);
        }
        Directory.CreateDirectory(folder);
        var paths = new Dictionary<int, string>();
        foreach (var file in files)
        {
            var path = Path.Combine(folder, Path.GetFileName(file.Path));
            paths[file.Id] = path;
            if (File.Exists(path)) File.Delete(path);
            var content = contents[file.Id];
            if (!content.Exists) continue;
            using var stream = new FileStream(path, FileMode.CreateNew, FileAccess.Write);
            stream.Write(content.Bytes);
        }
        return paths;
    }
}
