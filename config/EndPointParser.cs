using System.Net;

namespace NbdQcow.Config;

/// <summary>Parses "HOST:PORT" listen addresses: IPv4, "[IPv6]:PORT", or "localhost:PORT".</summary>
public static class EndPointParser
{
    public static bool TryParse(string? text, out IPEndPoint endPoint)
    {
        endPoint = null!;
        if (string.IsNullOrWhiteSpace(text))
        {
            return false;
        }
        var s = text.Trim();
        var colon = s.LastIndexOf(':');
        if (colon <= 0 || !ushort.TryParse(s.AsSpan(colon + 1), out var port))
        {
            return false;
        }
        var host = s[..colon];
        if (host.StartsWith('[') && host.EndsWith(']'))
        {
            host = host[1..^1];
        }
        else if (host.Contains(':'))
        {
            return false; // bare IPv6 needs brackets
        }
        if (host.Equals("localhost", StringComparison.OrdinalIgnoreCase))
        {
            endPoint = new IPEndPoint(IPAddress.Loopback, port);
            return true;
        }
        if (!IPAddress.TryParse(host, out var address))
        {
            return false;
        }
        endPoint = new IPEndPoint(address, port);
        return true;
    }
}
