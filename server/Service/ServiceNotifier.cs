using System.Net.Sockets;
using System.Text;

namespace NbdQcow.Server.Service;

/// <summary>
/// sd_notify: one datagram ("READY=1", "STOPPING=1") to the Unix socket named by NOTIFY_SOCKET; a leading '@'
/// names an abstract socket. Without the variable nothing is sent. A failed send is reported, never fatal.
/// </summary>
internal static class ServiceNotifier
{
    public const string NotifySocketVariable = "NOTIFY_SOCKET";

    /// <summary>Sends <paramref name="state"/> to the service manager, if one listens; returns the error text, or null.</summary>
    public static string? Notify(string state) =>
        Environment.GetEnvironmentVariable(NotifySocketVariable) is { Length: > 0 } address ? Send(address, state) : null;

    /// <summary>Sends one datagram to a Unix socket path or '@'-prefixed abstract name; returns the error text, or null.</summary>
    public static string? Send(string address, string message)
    {
        try
        {
            var path = address[0] == '@' ? "\0" + address[1..] : address;
            using var socket = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
            socket.SendTo(Encoding.UTF8.GetBytes(message), new UnixDomainSocketEndPoint(path));
            return null;
        }
        catch (Exception ex) when (ex is SocketException or ArgumentException)
        {
            return $"cannot notify {address}: {ex.Message}";
        }
    }
}
