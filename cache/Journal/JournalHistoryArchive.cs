using NbdQcow.HostIo;

namespace NbdQcow.Cache.Journal;

/// <summary>
/// The journal's bounded history: transactions retired by checkpoints are copied verbatim into an archive file
/// (a journal file with generation 0). When the archive passes <see cref="MaxBytes"/> it is rotated to
/// <c>PATH.1</c> (replacing the older one), so at most about twice that is kept. Best effort, never synced on its
/// own: losing history costs only how far back <c>recover</c> can look.
/// </summary>
public sealed class JournalHistoryArchive(string path, HostFileFactory hostFiles, long maxBytes) : IDisposable
{
    public string Path => path;

    public string OlderPath => path + ".1";

    public long MaxBytes => maxBytes;

    /// <summary>Copies <paramref name="length"/> bytes of transactions at <paramref name="offset"/> of <paramref name="source"/>.</summary>
    public void Append(IHostFile source, long offset, long length, int tableSize)
    {
        if (File.Exists(path) && new FileInfo(path).Length >= maxBytes)
        {
            File.Move(path, OlderPath, overwrite: true);
        }
        using var archive = hostFiles(path, new HostFileOptions(ReadOnly: false, Direct: false, Create: true));
        long end = archive.Length;
        if (end < JournalFormat.BlockSize || JournalReader.ReadHeader(archive, out _) is not { IsArchive: true })
        {
            var block = new byte[JournalFormat.BlockSize];
            JournalFormat.WriteFileHeader(block, tableSize, 0, 0, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds());
            archive.Write(0, block);
            archive.SetLength(JournalFormat.BlockSize);
            end = JournalFormat.BlockSize;
        }
        end = JournalFormat.RoundUp(end);
        var buffer = new byte[Math.Min(length, 4 << 20)];
        for (long done = 0; done < length;)
        {
            int n = (int)Math.Min(buffer.Length, length - done);
            source.Read(offset + done, buffer.AsSpan(0, n));
            archive.Write(end + done, buffer.AsSpan(0, n));
            done += n;
        }
    }

    public void Dispose() { }
}
