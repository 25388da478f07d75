using System.Runtime.InteropServices;

namespace NbdQcow.Server.Nbd;

/// <summary>
/// The process's open-file limit, read at each accept (an operator may lower it with prlimit while running).
/// Running out of descriptors is worse than refusing a client: the runtime itself then fails to open the files
/// it needs (an assembly loaded late fails with "Out of memory." and ends the process).
/// </summary>
internal static partial class DescriptorLimit
{
    private const int RlimitNofile = 7;

    /// <summary>The soft RLIMIT_NOFILE, or null where it cannot be read.</summary>
    public static long? Soft()
    {
        if (!OperatingSystem.IsLinux() || getrlimit(RlimitNofile, out var limit) != 0)
        {
            return null;
        }
        return limit.Current > long.MaxValue ? long.MaxValue : (long)limit.Current;
    }

    /// <summary>Descriptors open now, or 0 where /proc is not there.</summary>
    public static int CountOpen()
    {
        try
        {
            return Directory.GetFileSystemEntries("/proc/self/fd").Length;
        }
        catch (IOException)
        {
            return 0;
        }
        catch (UnauthorizedAccessException)
        {
            return 0;
        }
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct RLimit
    {
        public ulong Current;
        public ulong Maximum;
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial int getrlimit(int resource, out RLimit limit);
}
