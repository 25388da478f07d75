using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using NbdQcow.Cache;

namespace NbdQcow.Server.Metrics;

/// <summary>
/// The server's instruments on the "NbdQcow" <see cref="Meter"/>: what dotnet-counters reads directly and what the
/// Prometheus exporter (--metrics) serves. Per-export recording goes through <see cref="ExportMetrics"/>, whose tag
/// lists are built once, so recording allocates nothing per request.
/// </summary>
public sealed class ServerMetrics : IDisposable
{
    public const string MeterName = "NbdQcow";

    /// <summary>Request latency buckets, in seconds: 10 µs (a page-cache read) to 10 s (a held request).</summary>
    private static readonly double[] RequestBuckets =
        [0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

    /// <summary>Flush duration buckets, in seconds: 100 µs (nothing dirty, a cheap fdatasync) to 30 s.</summary>
    private static readonly double[] FlushBuckets =
        [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

    private readonly ConcurrentDictionary<string, ExportMetrics> _exports = new(StringComparer.Ordinal);

    public ServerMetrics()
    {
        Meter = new Meter(MeterName, typeof(ServerMetrics).Assembly.GetName().Version?.ToString());
        Requests = Meter.CreateCounter<long>("nbdqcow.requests", "{request}", "NBD requests answered, by export and command.");
        RequestBytes = Meter.CreateCounter<long>("nbdqcow.request.bytes", "By",
            "Bytes the answered requests asked for (read, written, zeroed, trimmed, cached), by export and command.");
        RequestDuration = Meter.CreateHistogram("nbdqcow.request.duration", "s",
            "Time from a request's decoding to its reply, by export and command.", tags: null,
            new InstrumentAdvice<double> { HistogramBucketBoundaries = RequestBuckets });
        RequestErrors = Meter.CreateCounter<long>("nbdqcow.request.errors", "{request}", "Requests answered with an error, by export and errno.");
        Flushes = Meter.CreateCounter<long>("nbdqcow.flushes", "{flush}",
            "Durable flushes (fdatasync) of an export's image: a client's FLUSH or FUA, the max-dirty-age timer, shutdown.");
        FlushDuration = Meter.CreateHistogram("nbdqcow.flush.duration", "s", "Duration of the durable flushes, by export.", tags: null,
            new InstrumentAdvice<double> { HistogramBucketBoundaries = FlushBuckets });
        Meter.CreateObservableGauge("nbdqcow.dirty.bytes", ObserveDirtyBytes, "By",
            "Bytes changed since the last durable flush: what a power loss would lose now.");
        Meter.CreateObservableGauge("nbdqcow.dirty.age", ObserveDirtyAge, "s",
            "Age of the oldest change not yet durable (0 when clean): the loss window, bounded by max dirty age.");
        ConnectionsOpen = Meter.CreateUpDownCounter<long>("nbdqcow.connections.open", "{connection}", "Connections open now (negotiating or served).");
        ConnectionsAccepted = Meter.CreateCounter<long>("nbdqcow.connections.accepted", "{connection}", "Connections accepted since start.");
        ConnectionsRefused = Meter.CreateCounter<long>("nbdqcow.connections.refused", "{connection}",
            "Connections refused or closed to make room at the connection limit.");
    }

    public Meter Meter { get; }

    internal Counter<long> Requests { get; }

    internal Counter<long> RequestBytes { get; }

    internal Histogram<double> RequestDuration { get; }

    internal Counter<long> RequestErrors { get; }

    internal Counter<long> Flushes { get; }

    internal Histogram<double> FlushDuration { get; }

    internal UpDownCounter<long> ConnectionsOpen { get; }

    internal Counter<long> ConnectionsAccepted { get; }

    internal Counter<long> ConnectionsRefused { get; }

    /// <summary>The instruments of one export; <paramref name="unflushed"/> reads its image's unflushed changes at scrape time.</summary>
    public ExportMetrics AddExport(string name, Func<UnflushedChanges?> unflushed) =>
        _exports.GetOrAdd(name, static (key, state) => new ExportMetrics(state.Metrics, key, state.Unflushed), (Metrics: this, Unflushed: unflushed));

    public void ConnectionOpened()
    {
        ConnectionsAccepted.Add(1);
        ConnectionsOpen.Add(1);
    }

    public void ConnectionClosed() => ConnectionsOpen.Add(-1);

    public void ConnectionRefused() => ConnectionsRefused.Add(1);

    private IEnumerable<Measurement<long>> ObserveDirtyBytes()
    {
        foreach (var export in _exports.Values)
        {
            if (export.Unflushed() is { } changes) yield return new Measurement<long>(changes.DirtyBytes, export.ExportTag);
        }
    }

    private IEnumerable<Measurement<double>> ObserveDirtyAge()
    {
        foreach (var export in _exports.Values)
        {
            if (export.Unflushed() is { } changes) yield return new Measurement<double>(changes.OldestAge.TotalSeconds, export.ExportTag);
        }
    }

    public void Dispose() => Meter.Dispose();
}
