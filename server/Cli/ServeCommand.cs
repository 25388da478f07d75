using System.CommandLine;
using NbdQcow.Config;

namespace NbdQcow.Server.Cli;

/// <summary>`nbdqcow serve`: serve one image (or the exports of a config file) over NBD.</summary>
internal static class ServeCommand
{
    public static Command Create()
    {
        var image = new Argument<string?>("IMAGE")
        {
            Description = "Image file to serve (raw or qcow2, probed). Without IMAGE and --config: disk.qcow2 in the current folder, created (10G) when missing.",
            Arity = ArgumentArity.ZeroOrOne,
        };
        var listen = new Option<string?>("--listen")
        {
            HelpName = "HOST:PORT",
            Description = "TCP address to listen on, HOST:PORT or [IPv6]:PORT; comma-separated for several; 'off' for none. Default 127.0.0.1:10809 (none when only --socket is given).",
        };
        var socket = new Option<string?>("--socket") {
            HelpName = "PATH", Description = "Also (or only) listen on this Unix socket path." };
        var export = new Option<string?>("--export")
        {
            HelpName = "NAME",
            Description = "Export name for IMAGE (default: the file name without extension); also served as the default export \"\".",
        };
        var cache = new Option<string?>("--cache")
        {
            HelpName = "MODE",
            Description = $"Cache mode: {string.Join("|", NbdQcow.Cache.CacheModeInfo.CliNames)} (default writeback; meanings as in qemu).",
        };
        cache.CompletionSources.Add(NbdQcow.Cache.CacheModeInfo.CliNames.ToArray());
        var maxDirtyAge = new Option<string?>("--max-dirty-age")
        {
            HelpName = "MS|off",
            Description = "Flush on the server's own when the oldest unflushed change is older than MS milliseconds; 'off' disables (default 1000).",
        };
        var journal = new Option<bool>("--journal") { Description = "qcow2: commit metadata changes to a write-ahead journal (IMAGE.journal) on each flush: two fdatasyncs instead of the ordered chain; not with --cache unsafe or raw images." };
        var readOnly = new Option<bool>("--read-only") { Description = "Serve read-only: writes, trims and zeroes fail with EPERM." };
        var config = new Option<string?>("--config") {
            HelpName = "FILE", Description = "JSON config file declaring listen addresses and exports (see config/examples/)." };
        var create = new Option<string?>("--create")
        {
            HelpName = "SIZE",
            Description = "Create IMAGE with this virtual size (e.g. 10G, 512M) when it does not exist: qcow2 for *.qcow2, else a sparse raw file.",
        };
        var snapshot = new Option<string?>("--snapshot") {
            HelpName = "NAME", Description = "Serve this internal qcow2 snapshot (read-only)." };
        var format = new Option<string?>("--format") {
            HelpName = "raw|qcow2", Description = "Image format: raw|qcow2 (default: probe the file header)." };
        var description = new Option<string?>("--description") {
            HelpName = "TEXT", Description = "Export description shown by `nbdinfo --list`." };
        var maxConnections = new Option<string?>("--max-connections")
        {
            HelpName = "N",
            Description = "Connections served at once, server-wide (default 512). At the limit the oldest connection still " +
                          "negotiating is closed to make room; when every one is past negotiation, new connections are closed at once.",
        };
        var handshakeTimeout = new Option<string?>("--handshake-timeout")
        {
            HelpName = "SECONDS|off",
            Description = "Close a client that has not finished negotiation (TLS included) within SECONDS (default 10).",
        };
        var maxBufferedBytes = new Option<string?>("--max-buffered-bytes")
        {
            HelpName = "SIZE",
            Description = "Server-wide bound on request and reply payloads held in memory (default 256M, at least 32M); beyond it " +
                          "the server stops reading requests until replies are sent. One connection holds at most a quarter of it.",
        };
        var verbose = new Option<bool>("--verbose") { Description = "Log connections and request errors on stderr." };
        var tls = new Option<string?>("--tls")
        {
            HelpName = "off|on|require",
            Description = "TLS (NBD_OPT_STARTTLS, X.509 via .NET SslStream, TLS 1.2/1.3): off (default); on = offered, clients may " +
                          "continue in plain text; require = every option but STARTTLS/ABORT refused with NBD_REP_ERR_TLS_REQD until TLS. " +
                          "PSK (qemu tls-creds-psk, nbdkit --tls-psk) is not available: SslStream has no TLS-PSK.",
        };
        var tlsCertificates = new Option<string?>("--tls-certificates")
        {
            HelpName = "DIR",
            Description = "Folder with server-cert.pem, server-key.pem (unencrypted) and ca-cert.pem, the layout of qemu's " +
                          "tls-creds-x509 and nbdkit; needed with --tls on|require.",
        };
        var tlsVerifyPeer = new Option<bool>("--tls-verify-peer") {
            Description = "Require a client certificate signed by ca-cert.pem (clients without one are refused)." };

        var noLock = new Option<bool>("--no-lock")
        {
            Description = "Take no image locks. By default the image (and its data and backing files) is locked as qemu locks " +
                          "it, so qemu and other nbdqcow processes cannot write it at the same time; turn that off only when you " +
                          "know nothing else uses the image.",
        };
        var forceShare = new Option<bool>("--force-share")
        {
            Description = "With --read-only: serve the image even while a writer (a VM, qemu-nbd, another nbdqcow) has it, as qemu's -U; " +
                          "reads may then see an image changing underneath.",
        };
        var inactive = new Option<bool>("--inactive")
        {
            Description = "Start as a migration destination: the export is announced but the image stays closed and unlocked for " +
                          "writing until `nbdqcow control PATH activate`; requests fail with ESHUTDOWN until then. Needs --control.",
        };
        var control = new Option<string?>("--control")
        {
            HelpName = "PATH",
            Description = "Unix socket for control commands, one JSON object per line: {\"command\":\"status\"|\"inactivate\"|\"activate\"} " +
                          "(see `nbdqcow control`). Inactivate hands the image over (flush, close, release the write lock); activate takes it back.",
        };
        var bitmap = new Option<string[]>("--bitmap")
        {
            HelpName = "NAME",
            Description = "Offer the image's persistent dirty bitmap NAME as the meta context qemu:dirty-bitmap:NAME (as qemu-nbd -B), " +
                          "for incremental backup; repeatable. A missing or inconsistent (in use) bitmap is refused at start.",
        };
        var werror = new Option<string?>("--werror")
        {
            HelpName = "report|enospc|retry|stop",
            Description = "When a write fails on the host: report it (default); enospc = hold and retry out-of-space errors; retry = hold " +
                          "and retry every host error; stop = stop taking writes until a probe finds the storage working. As qemu's werror.",
        };
        var rerror = new Option<string?>("--rerror")
        {
            HelpName = "report|retry",
            Description = "When a read fails on the host: report it (default), or hold and retry it. As qemu's rerror.",
        };
        var errorRetryTimeout = new Option<string?>("--error-retry-timeout")
        {
            HelpName = "MS",
            Description = "How long a held request is retried before its error goes to the client (default 60000).",
        };
        var backingRoot = new Option<string?>("--backing-root")
        {
            HelpName = "DIR",
            Description = "Backing files (the whole chain) and external data files of a qcow2 image must lie in DIR or under it, after " +
                          "symlinks; '/' allows any. Default: the folder of the served image. Devices, FIFOs and other non-regular files are always refused.",
        };
        var keyFile = new Option<string?>("--key-file")
        {
            HelpName = "FILE",
            Description = "Secret of a LUKS-encrypted qcow2 image: the whole content of FILE, as qemu's --object secret,file=FILE " +
                          "(no newline stripped). Without it the NBDQCOW_KEY environment variable is used. Never on the command line.",
        };
        var pidFile = new Option<string?>("--pid-file") { HelpName = "FILE", Description = "Write the server's pid to FILE once it listens; removed at exit." };
        var fork = new Option<bool>(Service.Daemon.ForkOption) { Description = "Run in the background: return (exit 0) once the server listens, or with its error." };
        var command = new Command("serve", "Serve an image (or the exports of a config file) over NBD until SIGTERM/SIGINT.")
        {
            pidFile, fork,
            image, listen, socket, export, cache, maxDirtyAge, journal, readOnly, config, create, snapshot, format, description, verbose,
            maxConnections, handshakeTimeout, maxBufferedBytes,
            tls, tlsCertificates, tlsVerifyPeer, noLock, forceShare, inactive, control, bitmap, werror, rerror, errorRetryTimeout, backingRoot, keyFile,
        };
        command.SetAction(parseResult =>
        {
            if (parseResult.GetValue(fork) && !Service.Daemon.IsChild) return Service.Daemon.RunParent(Program.Arguments);
            if (Service.Daemon.IsChild) Service.Daemon.DetachSession();
            // systemd socket activation: only when the command line names no listener of its own.
            var activated = parseResult.GetValue(listen) is null && parseResult.GetValue(socket) is null && Service.SocketActivation.IsOffered();
            var imagePath = parseResult.GetValue(image);
            var createSize = parseResult.GetValue(create);
            if (imagePath is null && parseResult.GetValue(config) is null && !EnvironmentDeclaresExports())
            {
                // Nothing named: serve (and on first use create) a default image, so one command gets a user going.
                imagePath = DefaultImage;
                createSize ??= DefaultImageSize;
                Console.Error.WriteLine($"nbdqcow serve: no IMAGE given; serving {DefaultImage} (created with {createSize} when missing)");
            }
            if (parseResult.GetValue(noLock) && parseResult.GetValue(forceShare))
            {
                Console.Error.WriteLine("nbdqcow serve: --no-lock and --force-share exclude each other; allowed: one of them");
                return 2;
            }
            var overrides = new ServeOverrides
            {
                Locking = parseResult.GetValue(noLock) ? "off" : parseResult.GetValue(forceShare) ? "force-share" : null,
                Inactive = parseResult.GetValue(inactive) ? true : null,
                Bitmaps = parseResult.GetValue(bitmap) is { Length: > 0 } bitmaps ? bitmaps : null,
                WriteErrorPolicy = parseResult.GetValue(werror),
                ReadErrorPolicy = parseResult.GetValue(rerror),
                ErrorRetryTimeout = parseResult.GetValue(errorRetryTimeout),
                Control = parseResult.GetValue(control),
                ImagePath = imagePath,
                Listen = parseResult.GetValue(listen),
                SocketActivated = activated,
                Socket = parseResult.GetValue(socket),
                ExportName = parseResult.GetValue(export),
                Cache = parseResult.GetValue(cache),
                MaxDirtyAge = parseResult.GetValue(maxDirtyAge),
                Journal = parseResult.GetValue(journal) ? true : null,
                ReadOnly = parseResult.GetValue(readOnly) ? true : null,
                Snapshot = parseResult.GetValue(snapshot),
                Format = parseResult.GetValue(format),
                Create = createSize,
                Description = parseResult.GetValue(description),
                BackingRoot = parseResult.GetValue(backingRoot),
                KeyFile = parseResult.GetValue(keyFile),
                Verbose = parseResult.GetValue(verbose) ? true : null,
                MaxConnections = parseResult.GetValue(maxConnections),
                HandshakeTimeout = parseResult.GetValue(handshakeTimeout),
                MaxBufferedBytes = parseResult.GetValue(maxBufferedBytes),
                Tls = parseResult.GetValue(tls),
                TlsCertificates = parseResult.GetValue(tlsCertificates),
                TlsVerifyPeer = parseResult.GetValue(tlsVerifyPeer) ? true : null,
            };
            ServerSettings settings;
            try
            {
                settings = ServerConfigurationLoader.Load(parseResult.GetValue(config), overrides);
            }
            catch (ConfigurationException ex)
            {
                Console.Error.WriteLine($"nbdqcow serve: {ex.Message}");
                return 2;
            }
            var service = new ServiceOptions(parseResult.GetValue(pidFile), activated);
            return ServeRunner.RunAsync(settings, service).GetAwaiter().GetResult();
        });
        return command;
    }

    private const string DefaultImage = "disk.qcow2";
    private const string DefaultImageSize = "10G";

    private static bool EnvironmentDeclaresExports()
    {
        foreach (System.Collections.DictionaryEntry variable in Environment.GetEnvironmentVariables())
            if (variable.Key is string name && name.StartsWith("NBDQCOW__EXPORTS__", StringComparison.OrdinalIgnoreCase)) return true;
        return false;
    }
}
