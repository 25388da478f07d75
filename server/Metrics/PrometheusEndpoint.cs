using System.Net;
using System.Net.Sockets;
using OpenTelemetry;
using OpenTelemetry.Metrics;

namespace NbdQcow.Server.Metrics;

/// <summary>--metrics HOST:PORT: the "NbdQcow" meter as Prometheus text at http://HOST:PORT/metrics.</summary>
public static class PrometheusEndpoint
{
    /// <summary>Starts the exporter's HTTP listener; throws <see cref="IOException"/> naming the address when it cannot listen.</summary>
    public static MeterProvider Start(IPEndPoint endPoint, out string url)
    {
        // A wildcard address listens on every interface whatever Host header a scraper sends; a specific one answers
        // requests addressed to it.
        var any = endPoint.Address.Equals(IPAddress.Any) || endPoint.Address.Equals(IPAddress.IPv6Any);
        var host = any ? "+" : endPoint.AddressFamily == AddressFamily.InterNetworkV6 ? $"[{endPoint.Address}]" : endPoint.Address.ToString();
        url = $"http://{(any ? endPoint.Address.ToString() : host)}:{endPoint.Port}/metrics";
        try
        {
            return Sdk.CreateMeterProviderBuilder()
                .AddMeter(ServerMetrics.MeterName)
                .AddPrometheusHttpListener(options =>
                {
                    options.Host = host;
                    options.Port = endPoint.Port;
                    // Every scrape sees the values of now (a gauge such as the dirty age must not lag a FLUSH).
                    options.ScrapeResponseCacheDurationMilliseconds = 0;
                })
                .Build();
        }
        catch (Exception ex) when (ex is HttpListenerException or SocketException or InvalidOperationException)
        {
            // The exporter wraps the listener's own error (address in use, permission denied): name that one.
            var cause = ex.InnerException is { } inner ? $"{ex.Message} ({inner.Message})" : ex.Message;
            throw new IOException($"metrics: cannot listen on {endPoint}: {cause}", ex);
        }
    }
}
