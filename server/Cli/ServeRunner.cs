using System.Net;
using System.Runtime.InteropServices;
using NbdQcow.Cache;
using NbdQcow.Config;
using NbdQcow.HostIo;
using NbdQcow.Image;
using NbdQcow.Server.Control;
using NbdQcow.Server.Exports;
using NbdQcow.Server.Logging;
using NbdQcow.Server.Metrics;
using NbdQcow.Server.Nbd;
using NbdQcow.Server.Storage;
using OpenTelemetry.Metrics;

namespace NbdQcow.Server.Cli;

/// <summary>
/// Runs the server for validated settings: creates missing images when asked, opens every export, listens,
/// prints one "listening" line on stdout, and on SIGTERM/SIGINT drains, flushes, closes and returns 0.
/// </summary>
internal static class ServeRunner
{
    /// <summary>A bitmap named for export must exist and be consistent now, or the server does not start (and closes the image).</summary>
    private static async Task RefuseUnexportableBitmapsAsync(ExportSettings export, IBlockDevice device)
    {
        foreach (var bitmap in export.Bitmaps)
        {
            var problem = device is IQemuStatusSource source ? source.CheckBitmapExportable(bitmap) : "the image format has no persistent bitmaps";
            if (problem is not null)
            {
                await device.DisposeAsync().ConfigureAwait(false);
                throw new InvalidDataException($"{export.Path}: bitmap \"{bitmap}\" cannot be exported: {problem}");
            }
        }
    }

    public static async Task<int> RunAsync(ServerSettings settings, ServiceOptions service)
    {
        var pidFile = service.PidFile is null ? null : new Service.PidFile(service.PidFile);
        using var loggerFactory = ServerLogging.CreateFactory(ServerLogging.MinimumLevel(settings.Verbose, settings.Quiet), ServerLogging.StderrIsJournal());
        var log = new ServerLog(loggerFactory.CreateLogger(ServerLogging.CategoryName));
        using var metrics = new ServerMetrics();
        MeterProvider? metricsExporter = null;
        var registry = new ExportRegistry();
        NbdServer? server = null;
        ControlServer? control = null;
        var handoffs = new List<KeyValuePair<string, HandoffBlockDevice>>();
        var storage = new Dictionary<string, ErrorPolicyBlockDevice>(StringComparer.Ordinal);
        var stop = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, context => { context.Cancel = true; stop.TrySetResult(); });
        using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, context => { context.Cancel = true; stop.TrySetResult(); });
        try
        {
            pidFile?.EnsureReplaceable();
            foreach (var export in settings.Exports)
            {
                CreateIfAsked(export);
                IBlockDevice? opened = null;
                var exportMetrics = metrics.AddExport(export.Name, () => (opened as IUnflushedChangesSource)?.UnflushedChanges);
                var engine = HostIoEngine.Create(export.EffectiveAio, message => log.Warn($"export '{export.Name}': {message}"));
                var options = OpenOptionsFor(export, log) with { FlushCompleted = exportMetrics.RecordFlush, HostFileFactory = engine.Factory };
                // With a control socket every export can be handed over (inactivated) and taken back (activated).
                IBlockDevice device;
                try
                {
                    device = settings.ControlPath is null ? ImageOpener.Open(export.Path, options)
                        : export.Inactive ? HandoffBlockDevice.OpenInactive(export.Path, options)
                        : HandoffBlockDevice.OpenActive(export.Path, options);
                }
                catch (Exception ex) when (FileErrorText.IsFileAccess(ex))
                {
                    var text = FileErrorText.Describe(export.Path, ex);
                    throw new IOException(text.EndsWith("Permission denied", StringComparison.Ordinal) && !export.ReadOnly
                        ? text + " (use --read-only to serve it read-only)" : text, ex);
                }
                catch (Exception ex) when (ex is ImageFormatException or NbdQcow.Image.Luks.EncryptionKeyException)
                {
                    // A damaged or hostile header: one line naming the image and the field, not a stack trace.
                    throw new InvalidDataException($"{export.Path}: {ex.Message}", ex);
                }
                await RefuseUnexportableBitmapsAsync(export, device).ConfigureAwait(false);
                opened = device;
                if (device is HandoffBlockDevice handoff) handoffs.Add(new(export.Name, handoff));
                // Error policies (werror/rerror) sit over everything else, so a held request is retried as a whole.
                var policed = new ErrorPolicyBlockDevice(device, export.Name, export.WriteErrorPolicy, export.ReadErrorPolicy,
                    export.ErrorRetryTimeout, log);
                storage[export.Name] = policed;
                registry.Add(new NbdExport(export.Name, policed, export.ReadOnly, export.Description, export.Bitmaps, engine.Batch)
                {
                    Metrics = exportMetrics,
                    // Encryption runs synchronously in the data path: such requests stay on the thread pool.
                    SubmittingEngine = export.KeyFile is null ? engine : null,
                },
                    export.Name == settings.DefaultExport);
            }

            var tls = settings.Tls is { } tlsSettings ? new TlsUpgrade(tlsSettings) : null;
            server = new NbdServer(registry, new NbdSessionOptions
            {
                MaxInFlight = settings.MaxInFlight,
                MaxConnections = settings.MaxConnections,
                HandshakeTimeout = settings.HandshakeTimeout,
                Budget = new BufferBudget(settings.MaxBufferedBytes),
                Tls = tls,
                Metrics = metrics,
            }, log);
            var where = new List<string>();
            foreach (var endPoint in settings.TcpEndPoints)
            {
                where.Add(FormatEndPoint(server.ListenTcp(endPoint)));
            }
            if (settings.SocketPath is { } socketPath)
            {
                server.ListenUnix(socketPath);
                where.Add("unix:" + Path.GetFullPath(socketPath));
            }
            if (service.SocketActivated)
            {
                foreach (var listener in Service.SocketActivation.TakeListeners())
                {
                    where.Add(server.ListenInherited(listener) is IPEndPoint ip ? FormatEndPoint(ip) : "unix:" + listener.LocalEndPoint);
                }
                where[^1] += " (socket activation)";
            }
            if (settings.ControlPath is { } controlPath)
            {
                control = ControlServer.Start(controlPath, handoffs, log);
                control.Storage = storage;
            }
            var metricsNote = "";
            if (settings.MetricsEndPoint is { } metricsEndPoint)
            {
                metricsExporter = PrometheusEndpoint.Start(metricsEndPoint, out var metricsUrl);
                metricsNote = $"; metrics {metricsUrl}";
                if (!IPAddress.IsLoopback(metricsEndPoint.Address))
                    log.Warn($"metrics are served on {metricsUrl}, beyond this host: anyone who reaches it sees export names and traffic");
            }
            var exportNames = new List<string>();
            foreach (var export in registry.Exports)
            {
                exportNames.Add(export.Name == registry.DefaultExportName ? $"'{export.Name}' (default)" : $"'{export.Name}'");
            }
            var tlsNote = tls is null ? "" : $"; TLS {(tls.Mode == TlsMode.Require ? "required" : "offered")} ({tls.Settings.ServerCertificate.Subject})";
            var controlNote = settings.ControlPath is null ? "" : $"; control socket {Path.GetFullPath(settings.ControlPath)}";
            foreach (var (name, handoff) in handoffs)
            {
                if (!handoff.IsActive) controlNote += $"; export '{name}' inactive";
            }
            var cacheModes = string.Join("/", settings.Exports.Select(e => e.CacheMode.ToCliName()).Distinct());
            Console.Out.WriteLine($"nbdqcow: listening on {string.Join(", ", where)}; exports {string.Join(", ", exportNames)}; cache {cacheModes}" +
                $"{tlsNote}{controlNote}{metricsNote}; stop with Ctrl-C or SIGTERM");
            Console.Out.Flush();
            pidFile?.Write();
            if (Service.ServiceNotifier.Notify("READY=1") is { } notifyError) log.Warn(notifyError);
            if (Service.Daemon.IsChild && Service.Daemon.ReportReady() is { } readyError) log.Warn(readyError);

            await stop.Task.ConfigureAwait(false);
            _ = Service.ServiceNotifier.Notify("STOPPING=1");
            log.Info("stopping: finishing in-flight requests, flushing exports");
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or BlockDeviceException
            or NotSupportedException or ArgumentException or System.Net.Sockets.SocketException or InvalidDataException)
        {
            Console.Error.WriteLine($"nbdqcow serve: {ex.Message}");
            if (control is not null)
            {
                await control.DisposeAsync().ConfigureAwait(false);
            }
            if (server is not null)
            {
                await server.StopAsync(TimeSpan.FromSeconds(5)).ConfigureAwait(false);
            }
            await CloseAsync(registry).ConfigureAwait(false);
            metricsExporter?.Dispose();
            pidFile?.Remove();
            return 1;
        }

        if (control is not null)
        {
            await control.DisposeAsync().ConfigureAwait(false);
        }
        await server.StopAsync(TimeSpan.FromSeconds(60)).ConfigureAwait(false);
        var closed = await CloseAsync(registry).ConfigureAwait(false);
        metricsExporter?.Dispose();
        pidFile?.Remove();
        return closed ? 0 : 1;
    }

    private static async Task<bool> CloseAsync(ExportRegistry registry)
    {
        try
        {
            await registry.DisposeAsync().ConfigureAwait(false);
            return true;
        }
        catch (AggregateException ex)
        {
            foreach (var inner in ex.InnerExceptions)
            {
                Console.Error.WriteLine($"nbdqcow serve: {inner.Message}");
            }
            return false;
        }
    }

    /// <summary>The one place an export's settings become how its image is opened (the config layer does not know the image library).</summary>
    private static ImageOpenOptions OpenOptionsFor(ExportSettings export, ServerLog log) => new()
    {
        CacheMode = export.CacheMode,
        ReadOnly = export.ReadOnly,
        MaxDirtyAge = export.MaxDirtyAge,
        Journal = export.Journal,
        Snapshot = export.Snapshot,
        Format = export.Format,
        Locking = export.Locking,
        BackingRoot = export.BackingRoot,
        EncryptionKey = EncryptionSecret.Read(export.KeyFile),
        BackgroundError = ex => log.Warn($"export '{export.Name}': background flush failed: {ex.Message}"),
        DamageReport = message => log.Warn($"export '{export.Name}': {message}"),
    };

    private static void CreateIfAsked(ExportSettings export)
    {
        if (export.CreateSize is not { } size || File.Exists(export.Path))
        {
            return;
        }
        var format = export.Format is { } name ? ImageFormats.Get(name) : ImageFormats.ForNewFile(export.Path);
        format.Create(export.Path, size);
    }

    private static string FormatEndPoint(IPEndPoint endPoint) =>
        endPoint.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6
            ? $"[{endPoint.Address}]:{endPoint.Port}"
            : $"{endPoint.Address}:{endPoint.Port}";
}
