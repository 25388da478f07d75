using System.Text.RegularExpressions;
using NbdQcow.HostIo;
using NbdQcow.Image.Qcow2;
using NbdQcow.Image.Qcow2.Format;
using NbdQcow.Image.Qcow2.Journal;

namespace NbdQcow.Tests.Crash.Oracle;

/// <summary>
/// qcow2 images created by our engine's creator (optionally over a raw backing file full of a known pattern),
/// checked after each crash with `qemu-img check` (exit 0 clean, 3 leaks only — both allowed; 2 corrupt, 1 failed).
/// </summary>
public sealed partial class Qcow2CrashImageFormat(int clusterSize = 65536, int refcountOrder = 4, bool withBacking = false, bool encrypted = false) : ICrashImageFormat
{
    public const string BackingFileName = "backing.raw";

    /// <summary>The pseudo-op whose pattern fills the backing file.</summary>
    public const int BackingOpId = 999_999;

    public string Name => "qcow2" + (clusterSize == 65536 ? "" : clusterSize >= 1 << 20 ? $"-{clusterSize >> 20}M" : $"-{clusterSize}")
                          + (refcountOrder == 4 ? "" : $"-r{1 << refcountOrder}") + (withBacking ? "+bk" : "") + (encrypted ? "+luks" : "");

    /// <summary>The LUKS secret of an encrypted variant (qemu-img check needs it too).</summary>
    private const string Secret = "crash-secret";

    public byte[]? EncryptionKey => encrypted ? System.Text.Encoding.UTF8.GetBytes(Secret) : null;

    public int InitialOpId => withBacking ? BackingOpId : 0;

    public void Create(string path, long virtualSize)
    {
        string? backing = null;
        if (withBacking)
        {
            backing = Path.Combine(Path.GetDirectoryName(path)!, BackingFileName);
            var content = new byte[virtualSize];
            SectorPattern.Fill(content, BackingOpId, 0, (int)(virtualSize / SectorPattern.SectorSize));
            using (var stream = new FileStream(backing, FileMode.CreateNew, FileAccess.Write))
            {
                stream.Write(content);
                stream.Flush(flushToDisk: true);
            }
        }
        Qcow2Creator.Create(path, new Qcow2CreateOptions
        {
            Size = virtualSize,
            ClusterSize = clusterSize,
            RefcountOrder = refcountOrder,
            BackingFile = backing is null ? null : BackingFileName,
            BackingFormat = backing is null ? null : "raw",
            EncryptionSecret = EncryptionKey,
            EncryptionIterTime = TimeSpan.FromMilliseconds(1),
        });
        using (var file = HostFile.Open(path, new HostFileOptions(ReadOnly: false, Direct: false))) file.Flush();
        HostDirectory.SyncParentOf(path);
    }

    /// <summary>Replays a pending metadata journal exactly as a read-write open by nbdqcow does.</summary>
    public string? PrepareForCheck(string path)
    {
        try
        {
            using var file = HostFile.Open(path, new HostFileOptions(ReadOnly: false, Direct: false));
            var header = Qcow2Header.Read(file);
            if (Qcow2JournalReplay.HasPendingJournal(header))
                Qcow2JournalReplay.ReplayOnDisk(path, file, header, HostFile.Open);
            return null;
        }
        catch (Exception e) when (e is Qcow2FormatException or IOException)
        {
            return $"journal replay failed: {e.Message}";
        }
    }

    public ConsistencyReport CheckConsistency(string path, long virtualSize)
    {
        string[] arguments = encrypted
            ? ["check", "--object", $"secret,id=sec0,data={Secret}", "--image-opts", $"driver=qcow2,file.filename={path},encrypt.key-secret=sec0"]
            : ["check", "-f", "qcow2", path];
        var check = ToolRunner.Run("qemu-img", arguments, TimeSpan.FromSeconds(60));
        var text = (check.Stdout + check.Stderr).Trim();
        var leaks = LeakCount().Match(text) is { Success: true } m ? int.Parse(m.Groups[1].Value) : 0;
        return check.ExitCode switch
        {
            0 or 3 => new ConsistencyReport(null, leaks),
            _ => new ConsistencyReport($"qemu-img check exit {check.ExitCode}: {text}", leaks),
        };
    }

    [GeneratedRegex(@"(\d+) leaked clusters were found")]
    private static partial Regex LeakCount();
}
