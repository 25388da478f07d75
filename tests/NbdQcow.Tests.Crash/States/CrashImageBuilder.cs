using System.IO.Hashing;
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

    /// <summary>
    /// Writes the files of <paramref name="state"/> into <paramref name="folder"/>; returns the path per file id and
    /// a hash of all their content (equal hashes: equal on-disk states, so a metadata check can be reused).
    /// </summary>
    public (Dictionary<int, string> Paths, UInt128 ContentHash) Write(CrashPoint point, CrashState state, Dictionary<int, FileContent> baseContents, string folder)
    {
        var hash = new XxHash128();
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
            hash.Append(BitConverter.GetBytes(content.Exists ? content.Length : -1));
            if (!content.Exists) continue;
            hash.Append(content.Bytes);
            using var stream = new FileStream(path, FileMode.CreateNew, FileAccess.Write);
            stream.Write(content.Bytes);
        }
        return (paths, hash.GetCurrentHashAsUInt128());
    }
}
