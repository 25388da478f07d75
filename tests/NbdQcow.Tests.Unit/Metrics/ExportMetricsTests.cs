using System.Diagnostics;
using System.Diagnostics.Metrics;
using NbdQcow.Protocol;
using NbdQcow.Server.Metrics;
using OpenTelemetry;
using OpenTelemetry.Metrics;

namespace NbdQcow.Tests.Unit.Metrics;

/// <summary>Per-request recording on the "NbdQcow" meter: the right instruments and tags, and no allocation per request.</summary>
public sealed class ExportMetricsTests
{
    [Fact]
    public void Recording_a_request_and_an_error_allocates_nothing_while_a_listener_reads_every_measurement()
    {
        using var metrics = new ServerMetrics();
        var export = metrics.AddExport("disk", () => null);
        long requests = 0, bytes = 0, errors = 0, durations = 0;
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (ReferenceEquals(instrument.Meter, metrics.Meter)) l.EnableMeasurementEvents(instrument);
        };
        listener.SetMeasurementEventCallback<long>((instrument, value, tags, _) =>
        {
            switch (instrument.Name)
            {
                case "nbdqcow.requests": requests += value; break;
                case "nbdqcow.request.bytes": bytes += value; break;
                case "nbdqcow.request.errors": errors += value; break;
            }
        });
        listener.SetMeasurementEventCallback<double>((instrument, _, _, _) =>
        {
            if (instrument.Name == "nbdqcow.request.duration") durations++;
        });
        listener.Start();

        export.RecordRequest(NbdCommand.Write, 4096, Stopwatch.GetTimestamp()); // warm up
        export.RecordError(NbdErrno.NoSpace);
        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 10_000; i++)
        {
            export.RecordRequest(NbdCommand.Read, 65536, Stopwatch.GetTimestamp());
            export.RecordRequest(NbdCommand.Flush, 0, Stopwatch.GetTimestamp());
            export.RecordError(NbdErrno.Io);
        }
        var allocated = GC.GetAllocatedBytesForCurrentThread() - before;

        Assert.True(allocated < 4096, $"{allocated} bytes allocated by 30,000 recordings"); // one object each: 720,000 at least
        Assert.Equal(20_001, requests);
        Assert.Equal(4096 + 10_000L * 65536, bytes); // a FLUSH carries no bytes
        Assert.Equal(10_001, errors);
        Assert.Equal(20_001, durations);
    }

    [Fact]
    public void With_the_opentelemetry_sdk_aggregating_as_for_prometheus_recording_allocates_nothing_per_request()
    {
        using var metrics = new ServerMetrics();
        var export = metrics.AddExport("disk", () => null);
        using var provider = Sdk.CreateMeterProviderBuilder().AddMeter(ServerMetrics.MeterName)
            .AddReader(new BaseExportingMetricReader(new DiscardingExporter())).Build();
        foreach (var command in new[] { NbdCommand.Read, NbdCommand.Write, NbdCommand.Flush }) // the series exist once
            export.RecordRequest(command, 4096, Stopwatch.GetTimestamp());
        export.RecordError(NbdErrno.Io);
        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 10_000; i++)
        {
            export.RecordRequest(NbdCommand.Read, 65536, Stopwatch.GetTimestamp());
            export.RecordRequest(NbdCommand.Write, 4096, Stopwatch.GetTimestamp());
            export.RecordRequest(NbdCommand.Flush, 0, Stopwatch.GetTimestamp());
            export.RecordError(NbdErrno.Io);
        }
        // One object per request would be at least 24 bytes x 40,000; a one-off (a runtime tier-up) may show a few bytes.
        var allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.True(allocated < 4096, $"{allocated} bytes allocated by 40,000 recordings");
    }

    private sealed class DiscardingExporter : BaseExporter<Metric>
    {
        public override ExportResult Export(in Batch<Metric> batch) => ExportResult.Success;
    }

    [Fact]
    public void Requests_are_tagged_with_export_and_command_and_errors_with_export_and_errno()
    {
        using var metrics = new ServerMetrics();
        var export = metrics.AddExport("disk", () => null);
        var seen = new List<string>();
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (ReferenceEquals(instrument.Meter, metrics.Meter)) l.EnableMeasurementEvents(instrument);
        };
        listener.SetMeasurementEventCallback<long>((instrument, value, tags, _) =>
        {
            var text = instrument.Name;
            foreach (var tag in tags) text += $" {tag.Key}={tag.Value}";
            seen.Add(text);
        });
        listener.Start();
        export.RecordRequest(NbdCommand.WriteZeroes, 8192, Stopwatch.GetTimestamp());
        export.RecordRequest((NbdCommand)42, 0, Stopwatch.GetTimestamp());
        export.RecordError(NbdErrno.NoSpace);
        Assert.Equal(
        [
            "nbdqcow.requests export=disk command=write_zeroes",
            "nbdqcow.request.bytes export=disk command=write_zeroes",
            "nbdqcow.requests export=disk command=other",
            "nbdqcow.request.errors export=disk errno=ENOSPC",
        ], seen);
    }
}
