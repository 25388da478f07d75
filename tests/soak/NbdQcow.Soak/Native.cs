using System.Runtime.InteropServices;

namespace NbdQcow.Soak;

/// <summary>kill(2): Process.Kill only sends SIGKILL, the soak needs SIGTERM too.</summary>
public static partial class Native
{
    public const int SigTerm = 15;
    public const int SigKill = 9;

    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    public static partial int Kill(int pid, int signal);
}
