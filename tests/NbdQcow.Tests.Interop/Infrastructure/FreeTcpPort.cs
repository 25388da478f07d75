using System.Net;
using System.Net.Sockets;

namespace NbdQcow.Tests.Interop.Infrastructure;

/// <summary>Asks the kernel for a free TCP port on 127.0.0.1 (other test runs may share the machine).</summary>
public static class FreeTcpPort
{
    public static int Find()
    {
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        return ((IPEndPoint)listener.LocalEndPoint!).Port;
    }
}
