using System.Diagnostics;
using System.Globalization;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text;

namespace NbdQcow.Server.Service;

/// <summary>
/// serve --fork. .NET cannot fork() safely, so the parent starts the same binary again with the same arguments
/// (without --fork) and a private notify socket in <see cref="ReadyVariable"/>. The child starts its own session
/// (setsid), serves, and sends READY=1 once it listens; the parent then exits 0. When the child exits before
/// that, its error is already on the shared stderr and the parent exits with the child's code.
/// </summary>
internal static partial class Daemon
{
    public const string ReadyVariable = "NBDQCOW_FORK_READY";
    public const string ForkOption = "--fork";

    /// <summary>In the parent: start the detached child and wait until it listens or exits.</summary>
    public static int RunParent(IReadOnlyList<string> arguments)
    {
        var folder = Directory.CreateTempSubdirectory("nbdqcow-fork-");
        try
        {
            var readyPath = System.IO.Path.Combine(folder.FullName, "ready");
            using var ready = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
            ready.Bind(new UnixDomainSocketEndPoint(readyPath));
            var start = new ProcessStartInfo(Environment.ProcessPath ?? throw new InvalidOperationException("no process path")) { UseShellExecute = false };
            if (System.IO.Path.GetFileNameWithoutExtension(start.FileName) == "dotnet")
            {
                // Run as `dotnet nbdqcow.dll`: the first argument is the entry assembly's path (a native binary has none).
                start.ArgumentList.Add(Environment.GetCommandLineArgs()[0]);
            }
            foreach (var argument in arguments)
            {
                if (argument != ForkOption) start.ArgumentList.Add(argument);
            }
            start.Environment[ReadyVariable] = readyPath;
            using var child = Process.Start(start) ?? throw new InvalidOperationException("could not start the server process");
            var buffer = new byte[64];
            while (true)
            {
                if (ready.Poll(200_000, SelectMode.SelectRead))
                {
                    var length = ready.Receive(buffer);
                    if (Encoding.UTF8.GetString(buffer, 0, length).StartsWith("READY=1", StringComparison.Ordinal)) return 0;
                }
                else if (child.HasExited)
                {
                    // A last READY may have raced the exit; otherwise the child's own message explains it.
                    if (ready.Available > 0) continue;
                    if (child.ExitCode != 0) return child.ExitCode;
                    Console.Error.WriteLine("nbdqcow serve: the server process exited before listening");
                    return 1;
                }
            }
        }
        finally
        {
            folder.Delete(recursive: true);
        }
    }

    /// <summary>True in the child started by <see cref="RunParent"/>.</summary>
    public static bool IsChild => Environment.GetEnvironmentVariable(ReadyVariable) is { Length: > 0 };

    /// <summary>In the child, first thing: leave the parent's session and controlling terminal.</summary>
    public static void DetachSession()
    {
        _ = setsid();
    }

    /// <summary>
    /// In the child, once listening: tell the parent, then point stdin/stdout/stderr at /dev/null so the child
    /// holds none of the caller's terminals or pipes open.
    /// </summary>
    public static string? ReportReady()
    {
        var readyPath = Environment.GetEnvironmentVariable(ReadyVariable);
        Environment.SetEnvironmentVariable(ReadyVariable, null);
        Console.Out.Flush();
        Console.Error.Flush();
        var error = readyPath is null ? null : ServiceNotifier.Send(readyPath, "READY=1");
        // The runtime's Console streams hold duplicates of 0, 1 and 2: every descriptor open on the same pipe,
        // terminal or file is pointed at /dev/null, or the caller would wait for an end of output that never comes.
        var standard = new HashSet<string>(StringComparer.Ordinal);
        for (var descriptor = 0; descriptor <= 2; descriptor++)
        {
            if (Target(descriptor.ToString(CultureInfo.InvariantCulture)) is { } target) standard.Add(target);
        }
        var devNull = open("/dev/null", OpenReadWrite);
        if (devNull < 0) return error;
        foreach (var entry in Directory.GetFiles("/proc/self/fd"))
        {
            var name = System.IO.Path.GetFileName(entry);
            if (int.TryParse(name, NumberStyles.None, CultureInfo.InvariantCulture, out var descriptor) && descriptor != devNull
                && Target(name) is { } target && standard.Contains(target))
            {
                _ = dup2(devNull, descriptor);
            }
        }
        if (devNull > 2) _ = close(devNull);
        return error;
    }

    private const int OpenReadWrite = 2;

    private static string? Target(string descriptor)
    {
        try
        {
            return new FileInfo("/proc/self/fd/" + descriptor).LinkTarget;
        }
        catch (IOException)
        {
            return null;
        }
    }

    [LibraryImport("libc", EntryPoint = "setsid", SetLastError = true)]
    private static partial int setsid();

    [LibraryImport("libc", EntryPoint = "open", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int open(string path, int flags);

    [LibraryImport("libc", EntryPoint = "dup2", SetLastError = true)]
    private static partial int dup2(int oldDescriptor, int newDescriptor);

    [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
    private static partial int close(int descriptor);
}
