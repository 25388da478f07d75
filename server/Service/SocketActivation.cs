using System.Globalization;
using System.Net.Sockets;

namespace NbdQcow.Server.Service;

/// <summary>
/// Listening sockets handed over by a service manager (systemd's LISTEN_FDS protocol): descriptors 3 .. 3+N-1,
/// meant for this process only when LISTEN_PID is our pid. The variables are removed once read so that a
/// child process does not take them for its own.
/// </summary>
internal static class SocketActivation
{
    private const int FirstDescriptor = 3;

    /// <summary>True when the environment hands sockets to this very process.</summary>
    public static bool IsOffered() =>
        Environment.GetEnvironmentVariable("LISTEN_PID") is { } pid
        && int.TryParse(pid, NumberStyles.None, CultureInfo.InvariantCulture, out var listenPid)
        && listenPid == Environment.ProcessId
        && DescriptorCount() > 0;

    /// <summary>Wraps the offered descriptors as listening sockets (TCP or Unix) and clears the variables.</summary>
    public static IReadOnlyList<Socket> TakeListeners()
    {
        var count = DescriptorCount();
        Environment.SetEnvironmentVariable("LISTEN_PID", null);
        Environment.SetEnvironmentVariable("LISTEN_FDS", null);
        Environment.SetEnvironmentVariable("LISTEN_FDNAMES", null);
        var sockets = new List<Socket>(count);
        for (var i = 0; i < count; i++)
        {
            var socket = new Socket(new SafeSocketHandle(FirstDescriptor + i, ownsHandle: true));
            if (socket.SocketType != SocketType.Stream)
            {
                throw new IOException($"socket activation: descriptor {FirstDescriptor + i} is not a stream socket; an NBD server needs ListenStream=");
            }
            sockets.Add(socket);
        }
        return sockets;
    }

    private static int DescriptorCount() =>
        Environment.GetEnvironmentVariable("LISTEN_FDS") is { } fds
        && int.TryParse(fds, NumberStyles.None, CultureInfo.InvariantCulture, out var count) && count is > 0 and < 1024
            ? count : 0;
}
