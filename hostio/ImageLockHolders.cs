using System.Diagnostics;
using System.Globalization;
using NbdQcow.HostIo.Native;

namespace NbdQcow.HostIo;

/// <summary>
/// Names the processes holding a lock byte of a file, for error messages. OFD locks carry no owner (/proc/locks shows
/// pid -1), but /proc/PID/fdinfo/FD lists the locks held through each open file, so a bounded scan of the processes
/// this user may inspect finds them. Best effort: processes of other users stay unnamed.
/// </summary>
internal static class ImageLockHolders
{
    private static readonly TimeSpan ScanBudget = TimeSpan.FromSeconds(2);

    /// <param name="ownFd">The asking lock's own descriptor, which holds the same bytes and is not a holder.</param>
    public static string Describe(string path, long offset, int ownFd)
    {
        var holders = Find(path, offset, ownFd);
        return holders.Count == 0
            ? "its holder could not be identified: a process of another user, or one that has just exited"
            : "held by " + string.Join(", ", holders);
    }

    private static List<string> Find(string path, long offset, int ownFd)
    {
        var found = new List<string>();
        if (LinuxFileCalls.StatX(LinuxFileCalls.AT_FDCWD, path, 0, LinuxFileCalls.STATX_INO, out var stat) != 0) return found;
        var fileKey = string.Create(CultureInfo.InvariantCulture, $"{stat.DeviceMajor:x2}:{stat.DeviceMinor:x2}:{stat.Inode}");
        var self = Environment.ProcessId;
        var clock = Stopwatch.StartNew();
        try
        {
            foreach (var processDirectory in Directory.EnumerateDirectories("/proc"))
            {
                if (clock.Elapsed > ScanBudget) break;
                if (!int.TryParse(System.IO.Path.GetFileName(processDirectory), NumberStyles.None, CultureInfo.InvariantCulture, out var pid))
                    continue;
                if (HoldsLock(processDirectory, fileKey, offset, pid == self ? ownFd : -1))
                    found.Add(pid == self ? $"this process itself (pid {pid}): the image is opened twice, e.g. by two exports" : $"{CommandName(processDirectory)}, pid {pid}");
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // /proc itself unreadable: no names.
        }
        return found;
    }

    private static bool HoldsLock(string processDirectory, string fileKey, long offset, int skipFd)
    {
        var skip = skipFd.ToString(CultureInfo.InvariantCulture);
        try
        {
            foreach (var fdInfo in Directory.EnumerateFiles(System.IO.Path.Combine(processDirectory, "fdinfo")))
            {
                if (System.IO.Path.GetFileName(fdInfo) == skip) continue;
                foreach (var line in File.ReadLines(fdInfo))
                {
                    // lock:	1: OFDLCK ADVISORY  READ -1 fe:00:11665869 100 101
                    if (!line.StartsWith("lock:", StringComparison.Ordinal)) continue;
                    var fields = line.Split((char[])[' ', '\t'], StringSplitOptions.RemoveEmptyEntries);
                    var at = Array.IndexOf(fields, fileKey);
                    if (at < 0 || at + 2 >= fields.Length) continue;
                    if (!long.TryParse(fields[at + 1], NumberStyles.None, CultureInfo.InvariantCulture, out var start)) continue;
                    var end = fields[at + 2] == "EOF" ? long.MaxValue
                        : long.TryParse(fields[at + 2], NumberStyles.None, CultureInfo.InvariantCulture, out var e) ? e : -1;
                    if (start <= offset && offset <= end) return true;
                }
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // Another user's process, or one that exited while we looked.
        }
        return false;
    }

    private static string CommandName(string processDirectory)
    {
        try
        {
            var name = File.ReadAllText(System.IO.Path.Combine(processDirectory, "comm")).Trim();
            return name.Length == 0 ? "unknown" : name;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return "unknown";
        }
    }
}
