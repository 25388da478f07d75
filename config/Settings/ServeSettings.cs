using System.Net;
using NbdQcow.Cache;
using NbdQcow.HostIo;

namespace NbdQcow.Config.Settings;

/// <summary>
/// Every setting of `nbdqcow serve`, declared once: key (JSON and NBDQCOW__ environment), scope, command-line
/// spellings and help, README row, check and where the value goes. A new setting is one declaration here (and its
/// property in <see cref="ServerSettings"/> or <see cref="ExportSettings"/>, and its use); the loader, the known-key
/// check, the `serve` options and the README table follow from this list.
/// </summary>
public static class ServeSettings
{
    private const SettingScope Server = SettingScope.Server;
    private const SettingScope Export = SettingScope.Export;

    // ---- Server-wide ------------------------------------------------------------------------------------

    public static readonly CheckedTogetherSetting Listen = new("Listen", Server, "TCP address(es)",
        "`HOST:PORT`, `[IPv6]:PORT`, comma list, `off` (`127.0.0.1:10809`, none if only `Socket`)",
        new CliSpelling("--listen", "HOST:PORT",
            "TCP address to listen on, HOST:PORT or [IPv6]:PORT; comma-separated for several; 'off' for none. Default 127.0.0.1:10809 (none when only --socket is given)."));

    public static readonly TypedSetting<ServerSettings, string?> Socket = new("Socket", Server, "Unix socket path", "a path (none)",
        [new CliSpelling("--socket", "PATH", "Also (or only) listen on this Unix socket path.")],
        SettingParsers.OptionalText, (s, v) => s with { SocketPath = v });

    public static readonly CheckedTogetherSetting DefaultExport = new("DefaultExport", Server, "export served for the name `\"\"`",
        "an export name (the first export)");

    public static readonly TypedSetting<ServerSettings, long> MaxInFlight = new("MaxInFlight", Server, "requests in flight per connection", "1..4096 (64)",
        [], SettingParsers.Whole(1, 4096, "an integer from 1 to 4096"), (s, v) => s with { MaxInFlight = (int)v });

    public static readonly TypedSetting<ServerSettings, long> MaxConnections = new("MaxConnections", Server,
        "connections served at once, server-wide (see [Security](#security))", $"1..{ServerSettingsValidator.MaxConnectionsLimit} ({ServerSettings.DefaultMaxConnections})",
        [new CliSpelling("--max-connections", "N",
            $"Connections served at once, server-wide (default {ServerSettings.DefaultMaxConnections}). At the limit the oldest connection still " +
            "negotiating is closed to make room; when every one is past negotiation, new connections are closed at once.")],
        SettingParsers.Whole(1, ServerSettingsValidator.MaxConnectionsLimit, $"an integer from 1 to {ServerSettingsValidator.MaxConnectionsLimit}"),
        (s, v) => s with { MaxConnections = (int)v });

    public static readonly TypedSetting<ServerSettings, TimeSpan?> HandshakeTimeout = new("HandshakeTimeout", Server,
        "seconds a client has to finish negotiating, TLS included", $"1..3600, `off` ({ServerSettings.DefaultHandshakeTimeoutSeconds})",
        [new CliSpelling("--handshake-timeout", "SECONDS|off",
            $"Close a client that has not finished negotiation (TLS included) within SECONDS (default {ServerSettings.DefaultHandshakeTimeoutSeconds}).")],
        SettingParsers.TimeOrOff(1, 3600, s => TimeSpan.FromSeconds(s), "seconds from 1 to 3600, or 'off'"),
        (s, v) => s with { HandshakeTimeout = v });

    public static readonly TypedSetting<ServerSettings, long> MaxBufferedBytes = new("MaxBufferedBytes", Server,
        "request and reply payloads held in memory, server-wide", "`32M`..`64G` (`256M`)",
        [new CliSpelling("--max-buffered-bytes", "SIZE",
            "Server-wide bound on request and reply payloads held in memory (default 256M, at least 32M); beyond it " +
            "the server stops reading requests until replies are sent. One connection holds at most a quarter of it.")],
        text => SizeParser.TryParse(text, out var size) && size >= ServerSettingsValidator.MinBufferedBytes && size <= ServerSettingsValidator.MaxBufferedBytesLimit
            ? SettingParse<long>.Ok(size)
            : SettingParse<long>.NotAllowed(text, "a size from 32M (one largest request) to 64G, e.g. 256M or 1G"),
        (s, v) => s with { MaxBufferedBytes = v });

    public static readonly TypedSetting<ServerSettings, bool> Verbose = new("Verbose", Server, "log connections and failed requests",
        "`true`, `false` (`false`)",
        [CliSpelling.Flag("--verbose", "Log connections and request errors on stderr.")],
        SettingParsers.Bool, (s, v) => s with { Verbose = v });

    public static readonly TypedSetting<ServerSettings, bool> Quiet = new("Quiet", Server,
        "log only warnings and errors (with `Verbose` too, `Verbose` wins)", "`true`, `false` (`false`)",
        [CliSpelling.Flag("--quiet", "Log only warnings and errors.")],
        SettingParsers.Bool, (s, v) => s with { Quiet = v });

    /// <summary>
    /// "off" or HOST:PORT with an IP address or localhost. There is no default address: whoever wants the metrics on
    /// every interface writes 0.0.0.0 or [::] themselves. A host name is refused (it could resolve to any interface),
    /// and so is port 0 (Prometheus needs a known port).
    /// </summary>
    public static readonly TypedSetting<ServerSettings, IPEndPoint?> Metrics = new("Metrics", Server,
        "Prometheus endpoint `http://HOST:PORT/metrics` (see [Logs and metrics](#logs-and-metrics))",
        "`HOST:PORT` with an IP address or `localhost`, `off` (`off`)",
        [new CliSpelling("--metrics", "HOST:PORT",
            "Serve Prometheus metrics at http://HOST:PORT/metrics (off by default; e.g. 127.0.0.1:9464; 0.0.0.0:PORT for every interface).")],
        text => string.IsNullOrWhiteSpace(text) || text.Trim().Equals("off", StringComparison.OrdinalIgnoreCase)
            ? SettingParse<IPEndPoint?>.Ok(null)
            : EndPointParser.TryParse(text, out var endPoint) && endPoint.Port != 0
                ? SettingParse<IPEndPoint?>.Ok(endPoint)
                : SettingParse<IPEndPoint?>.NotAllowed(text, "HOST:PORT with an IP address or localhost, e.g. 127.0.0.1:9464 "
                    + "(0.0.0.0:9464 or [::]:9464 for every interface), or 'off'"),
        (s, v) => s with { MetricsEndPoint = v });

    public static readonly CheckedTogetherSetting Tls = new("Tls", Server, "TLS mode (see [TLS](#tls))", "`off`, `on`, `require` (`off`)",
        new CliSpelling("--tls", "off|on|require",
            "TLS (NBD_OPT_STARTTLS, X.509 via .NET SslStream, TLS 1.2/1.3): off (default); on = offered, clients may " +
            "continue in plain text; require = every option but STARTTLS/ABORT refused with NBD_REP_ERR_TLS_REQD until TLS. " +
            "PSK (qemu tls-creds-psk, nbdkit --tls-psk) is not available: SslStream has no TLS-PSK."));

    public static readonly CheckedTogetherSetting TlsCertificates = new("TlsCertificates", Server,
        "folder with `server-cert.pem`, `server-key.pem`, `ca-cert.pem`", "a path (required unless `Tls` is `off`)",
        new CliSpelling("--tls-certificates", "DIR",
            "Folder with server-cert.pem, server-key.pem (unencrypted) and ca-cert.pem, the layout of qemu's " +
            "tls-creds-x509 and nbdkit; needed with --tls on|require."));

    public static readonly CheckedTogetherSetting TlsVerifyPeer = new("TlsVerifyPeer", Server,
        "require client certificates signed by `ca-cert.pem`", "`true`, `false` (`false`)",
        CliSpelling.Flag("--tls-verify-peer", "Require a client certificate signed by ca-cert.pem (clients without one are refused)."));

    public static readonly TypedSetting<ServerSettings, string?> Control = new("Control", Server,
        "control socket (see [Migration and backup with qemu](#migration-and-backup-with-qemu))", "a path (none)",
        [new CliSpelling("--control", "PATH",
            "Unix socket for control commands, one JSON object per line: {\"command\":\"status\"|\"inactivate\"|\"activate\"} " +
            "(see `nbdqcow control`). Inactivate hands the image over (flush, close, release the write lock); activate takes it back.")],
        SettingParsers.OptionalText, (s, v) => s with { ControlPath = v });

    public static readonly CheckedTogetherSetting BackingRoot = new("BackingRoot", SettingScope.ServerAndExport,
        "folder the image's backing files and data file must lie in (after symlinks); top level: every export's",
        "an existing folder, `/` for any (top-level `BackingRoot`, else the image's folder)",
        new CliSpelling("--backing-root", "DIR",
            "Backing files (the whole chain) and external data files of a qcow2 image must lie in DIR or under it, after " +
            "symlinks; '/' allows any. Default: the folder of the served image. Devices, FIFOs and other non-regular files are always refused."));

    // ---- Per export -------------------------------------------------------------------------------------

    public static readonly CheckedTogetherSetting Path = new("Path", Export, "image file", "a path (required)");

    public static readonly CheckedTogetherSetting Name = new("Name", Export, "export name", "non-empty, unique (file name without extension)");

    public static readonly TypedSetting<ExportSettings, string?> Description = new("Description", Export, "shown by `nbdinfo --list`", "text (none)",
        [new CliSpelling("--description", "TEXT", "Export description shown by `nbdinfo --list`.")],
        text => SettingParse<string?>.Ok(text.Length == 0 ? null : text), (s, v) => s with { Description = v });

    public static readonly TypedSetting<ExportSettings, CacheMode> Cache = new("Cache", Export, "cache mode",
        "`writeback`, `writethrough`, `none`, `directsync`, `unsafe` (`writeback`)",
        [new CliSpelling("--cache", "MODE", $"Cache mode: {string.Join("|", CacheModeInfo.CliNames)} (default writeback; meanings as in qemu).")
            { Completions = CacheModeInfo.CliNames }],
        text => CacheModeInfo.TryParse(text, out var mode)
            ? SettingParse<CacheMode>.Ok(mode)
            : SettingParse<CacheMode>.Bad($"'{text}' is not a cache mode; allowed: {string.Join(", ", CacheModeInfo.CliNames)}"),
        (s, v) => s with { CacheMode = v });

    public static readonly TypedSetting<ExportSettings, AioEngine?> Aio = new("Aio", Export,
        "host I/O engine of the data path (see [Serving](#serving)); io_uring falls back to threads where the kernel refuses it",
        "`threads`, `io_uring` (`io_uring` in none and directsync, else `threads`)",
        [new CliSpelling("--aio", "ENGINE",
            $"Host I/O engine of the data path: {string.Join("|", CacheModeInfo.AioNames)} (default io_uring in cache modes none and directsync, threads in the others; io_uring falls back to threads, with one log line, where the kernel refuses it).")
            { Completions = CacheModeInfo.AioNames }],
        text => CacheModeInfo.TryParseAio(text, out var engine)
            ? SettingParse<AioEngine?>.Ok(engine)
            : SettingParse<AioEngine?>.Bad($"'{text}' is not an I/O engine; allowed: {string.Join(", ", CacheModeInfo.AioNames)}"),
        (s, v) => s with { Aio = v });

    public static readonly TypedSetting<ExportSettings, TimeSpan?> MaxDirtyAge = new("MaxDirtyAge", Export, "max age of unflushed changes",
        "milliseconds 1..86400000, `off` (`1000`)",
        [new CliSpelling("--max-dirty-age", "MS|off",
            "Flush on the server's own when the oldest unflushed change is older than MS milliseconds; 'off' disables (default 1000).")],
        SettingParsers.TimeOrOff(1, 24L * 3600 * 1000, ms => TimeSpan.FromMilliseconds(ms), "milliseconds from 1 to 86400000, or 'off'"),
        (s, v) => s with { MaxDirtyAge = v });

    public static readonly TypedSetting<ExportSettings, bool> Journal = new("Journal", Export,
        "qcow2 metadata journal (`IMAGE.journal`); refused for raw images and with `Cache: unsafe`", "`false`",
        [CliSpelling.Flag("--journal",
            "qcow2: commit metadata changes to a write-ahead journal (IMAGE.journal) on each flush: two fdatasyncs instead of the ordered chain; not with --cache unsafe or raw images.")],
        SettingParsers.Bool, (s, v) => s with { Journal = v });

    public static readonly TypedSetting<ExportSettings, bool> ReadOnly = new("ReadOnly", Export, "refuse writes", "`true`, `false` (`false`)",
        [CliSpelling.Flag("--read-only", "Serve read-only: writes, trims and zeroes fail with EPERM.")],
        SettingParsers.Bool, (s, v) => s with { ReadOnly = v });

    public static readonly TypedSetting<ExportSettings, string?> Snapshot = new("Snapshot", Export, "serve an internal qcow2 snapshot, read-only",
        "a snapshot name or id (none)",
        [new CliSpelling("--snapshot", "NAME", "Serve this internal qcow2 snapshot (read-only).")],
        SettingParsers.OptionalText, (s, v) => s with { Snapshot = v });

    public static readonly CheckedTogetherSetting Format = new("Format", Export, "force the format", "a registered format: `raw`, `qcow2`, `bochs` (probe)",
        new CliSpelling("--format", "FORMAT", "Image format (default: probe the file header)."));

    public static readonly TypedSetting<ExportSettings, long?> Create = new("Create", Export, "create when missing, with this size",
        "`10G`, `512M`, bytes (none)",
        [new CliSpelling("--create", "SIZE",
            "Create IMAGE with this virtual size (e.g. 10G, 512M) when it does not exist: qcow2 for *.qcow2, else a sparse raw file.")],
        text => string.IsNullOrWhiteSpace(text) ? SettingParse<long?>.Ok(null)
            : SizeParser.TryParse(text, out var size) && size > 0 ? SettingParse<long?>.Ok(size)
            : SettingParse<long?>.Bad($"'{text}' is not a size; allowed: a positive size such as 10G, 512M, 64K or bytes"),
        (s, v) => s with { CreateSize = v });

    public static readonly TypedSetting<ExportSettings, ImageLocking> Locking = new("Locking", Export,
        "image locks against qemu and other nbdqcow processes", "`on`, `off`, `force-share` (read-only exports) (`on`)",
        [
            CliSpelling.Flag("--no-lock",
                "Take no image locks. By default the image (and its data and backing files) is locked as qemu locks " +
                "it, so qemu and other nbdqcow processes cannot write it at the same time; turn that off only when you " +
                "know nothing else uses the image.", "off"),
            CliSpelling.Flag("--force-share",
                "With --read-only: serve the image even while a writer (a VM, qemu-nbd, another nbdqcow) has it, as qemu's -U; " +
                "reads may then see an image changing underneath.", "force-share"),
        ],
        text => text.Trim().ToLowerInvariant() switch
        {
            "" or "on" or "true" or "yes" or "1" => SettingParse<ImageLocking>.Ok(ImageLocking.On),
            "off" or "false" or "no" or "0" => SettingParse<ImageLocking>.Ok(ImageLocking.Off),
            "force-share" => SettingParse<ImageLocking>.Ok(ImageLocking.ForceShare),
            _ => SettingParse<ImageLocking>.NotAllowed(text, string.Join(", ", ServerSettingsValidator.LockingModes)),
        },
        (s, v) => s with { Locking = v });

    public static readonly TypedSetting<ExportSettings, bool> Inactive = new("Inactive", Export,
        "start as a migration destination (needs `Control`)", "`true`, `false` (`false`)",
        [CliSpelling.Flag("--inactive",
            "Start as a migration destination: the export is announced but the image stays closed and unlocked for " +
            "writing until `nbdqcow control PATH activate`; requests fail with ESHUTDOWN until then. Needs --control.")],
        SettingParsers.Bool, (s, v) => s with { Inactive = v });

    public static readonly ListSetting<ExportSettings> Bitmaps = new("Bitmaps", Export,
        "persistent dirty bitmaps offered as `qemu:dirty-bitmap:NAME` (see [Migration and backup with qemu](#migration-and-backup-with-qemu))",
        "a list of bitmap names (none)",
        [new CliSpelling("--bitmap", "NAME",
            "Offer the image's persistent dirty bitmap NAME as the meta context qemu:dirty-bitmap:NAME (as qemu-nbd -B), " +
            "for incremental backup; repeatable. A missing or inconsistent (in use) bitmap is refused at start.", CliShape.List)],
        (bitmap, accepted) => string.IsNullOrEmpty(bitmap) || bitmap.Length > 1023
            ? $"'{bitmap}' is not a bitmap name; allowed: 1 to 1023 characters, as qemu-img bitmap names them"
            : accepted.Contains(bitmap) ? $"'{bitmap}' is named twice; allowed: each bitmap once" : null,
        (s, v) => s with { Bitmaps = v });

    public static readonly TypedSetting<ExportSettings, WriteErrorPolicy> WriteErrorPolicy = new("WriteErrorPolicy", Export,
        "what a failing write does (see [When storage fails](#when-storage-fails))", "`report`, `enospc`, `retry`, `stop` (`report`)",
        [new CliSpelling("--werror", "report|enospc|retry|stop",
            "When a write fails on the host: report it (default); enospc = hold and retry out-of-space errors; retry = hold " +
            "and retry every host error; stop = stop taking writes until a probe finds the storage working. As qemu's werror.")],
        SettingParsers.EnumName<Config.WriteErrorPolicy>, (s, v) => s with { WriteErrorPolicy = v });

    public static readonly TypedSetting<ExportSettings, ReadErrorPolicy> ReadErrorPolicy = new("ReadErrorPolicy", Export,
        "what a failing read does", "`report`, `retry` (`report`)",
        [new CliSpelling("--rerror", "report|retry", "When a read fails on the host: report it (default), or hold and retry it. As qemu's rerror.")],
        SettingParsers.EnumName<Config.ReadErrorPolicy>, (s, v) => s with { ReadErrorPolicy = v });

    public static readonly TypedSetting<ExportSettings, TimeSpan> ErrorRetryTimeout = new("ErrorRetryTimeout", Export,
        "how long a held request is retried before its error is reported", "milliseconds 100..86400000 (`60000`)",
        [new CliSpelling("--error-retry-timeout", "MS", "How long a held request is retried before its error goes to the client (default 60000).")],
        text => SettingParsers.Whole(100, 24L * 3600 * 1000, "milliseconds from 100 to 86400000")(text) is { Problem: null } ms
            ? SettingParse<TimeSpan>.Ok(TimeSpan.FromMilliseconds(ms.Value))
            : SettingParse<TimeSpan>.NotAllowed(text, "milliseconds from 100 to 86400000"),
        (s, v) => s with { ErrorRetryTimeout = v });

    public static readonly TypedSetting<ExportSettings, string?> KeyFile = new("KeyFile", Export,
        "file whose whole content is the secret of a LUKS-encrypted qcow2 (see [Encrypted images](#encrypted-images-luks))",
        "a path (none: `NBDQCOW_KEY`, if set)",
        [new CliSpelling("--key-file", "FILE",
            "Secret of a LUKS-encrypted qcow2 image: the whole content of FILE, as qemu's --object secret,file=FILE " +
            "(no newline stripped). Without it the NBDQCOW_KEY environment variable is used. Never on the command line.")],
        text => SettingParse<string?>.Ok(string.IsNullOrEmpty(text) ? null : System.IO.Path.GetFullPath(text)), (s, v) => s with { KeyFile = v });

    /// <summary>Every setting, in the order of the README's key table and of the "allowed:" lists of unknown-key messages.</summary>
    public static readonly IReadOnlyList<Setting> All =
    [
        Listen, Socket, DefaultExport, MaxInFlight, MaxConnections, HandshakeTimeout, MaxBufferedBytes, Verbose, Quiet, Metrics, Tls, TlsCertificates,
        TlsVerifyPeer, Control,
        Name, Path, Description, Cache, Aio, ReadOnly, MaxDirtyAge, Journal, Snapshot, Format, Create, Locking, Inactive, Bitmaps,
        WriteErrorPolicy, ReadErrorPolicy, ErrorRetryTimeout, KeyFile,
        BackingRoot,
    ];

    /// <summary>The key that holds the list of exports.</summary>
    public const string ExportsKey = "Exports";

    /// <summary>Keys allowed at the top level (Exports included).</summary>
    public static IReadOnlyList<string> ServerKeys { get; } = [.. All.Where(s => s.AtServerLevel).Select(s => s.Key), ExportsKey];

    /// <summary>Keys allowed in an export.</summary>
    public static IReadOnlyList<string> ExportKeys { get; } = [.. All.Where(s => s.AtExportLevel).Select(s => s.Key)];

    /// <summary>The setting of that key (case-insensitive), or null.</summary>
    public static Setting? Find(string key) => All.FirstOrDefault(s => s.Key.Equals(key, StringComparison.OrdinalIgnoreCase));

    /// <summary>The README's key table rows ("| `Key` | meaning | allowed |"), export keys as Exports:N:Key.</summary>
    public static IEnumerable<string> ReadmeRows()
    {
        foreach (var setting in All.Where(s => s.AtServerLevel))
            yield return $"| `{setting.Key}` | {setting.Meaning} | {setting.Allowed} |";
        foreach (var setting in All.Where(s => s.AtExportLevel))
            yield return $"| `Exports:N:{setting.Key}` | {setting.Meaning} | {setting.Allowed} |";
    }
}
