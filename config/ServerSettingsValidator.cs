using System.Globalization;
using System.Net;
using System.Text;
using NbdQcow.Cache;

namespace NbdQcow.Config;

/// <summary>Turns bound options into <see cref="ServerSettings"/>, collecting one message per bad key.</summary>
public static class ServerSettingsValidator
{
    public const string DefaultListen = "127.0.0.1:10809";

    public static readonly string[] Formats = ["raw", "qcow2"];

    public const int MaxConnectionsLimit = 65536;

    /// <summary>One request of the largest size (32 MiB) must always fit.</summary>
    public const long MinBufferedBytes = 32L * 1024 * 1024;

    public const long MaxBufferedBytesLimit = 64L * 1024 * 1024 * 1024;

    /// <param name="listenGiven">False when no layer set Listen: the default applies unless a Unix socket was asked for.</param>
    /// <param name="socketActivated">Listening sockets come from the service manager: no default address, none required.</param>
    public static ServerSettings? Validate(NbdQcowOptions options, bool listenGiven, List<string> problems, bool socketActivated = false)
    {
        var endPoints = new List<IPEndPoint>();
        var listen = listenGiven ? options.Listen : (string.IsNullOrEmpty(options.Socket) && !socketActivated ? DefaultListen : null);
        if (!string.IsNullOrWhiteSpace(listen) && !listen.Trim().Equals("off", StringComparison.OrdinalIgnoreCase))
        {
            foreach (var part in listen.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
            {
                if (EndPointParser.TryParse(part, out var endPoint))
                {
                    endPoints.Add(endPoint);
                }
                else
                {
                    problems.Add($"Listen: '{part}' is not HOST:PORT; allowed: an IP address or localhost with a port, e.g. 127.0.0.1:10809 or [::1]:10809, or 'off'");
                }
            }
        }
        var socket = string.IsNullOrWhiteSpace(options.Socket) ? null : options.Socket;
        if (endPoints.Count == 0 && socket is null && !socketActivated && problems.Count == 0)
        {
            problems.Add("Listen: nothing to listen on; allowed: HOST:PORT, or set Socket to a Unix socket path");
        }

        var maxInFlight = 64;
        if (options.MaxInFlight is { } m && (!int.TryParse(m, NumberStyles.None, CultureInfo.InvariantCulture, out maxInFlight) || maxInFlight is < 1 or > 4096))
        {
            problems.Add($"MaxInFlight: '{m}' is not allowed; allowed: an integer from 1 to 4096");
            maxInFlight = 64;
        }
        var maxConnections = ServerSettings.DefaultMaxConnections;
        if (options.MaxConnections is { } c && (!int.TryParse(c, NumberStyles.None, CultureInfo.InvariantCulture, out maxConnections)
            || maxConnections is < 1 or > MaxConnectionsLimit))
        {
            problems.Add($"MaxConnections: '{c}' is not allowed; allowed: an integer from 1 to {MaxConnectionsLimit}");
            maxConnections = ServerSettings.DefaultMaxConnections;
        }
        TimeSpan? handshakeTimeout = TimeSpan.FromSeconds(ServerSettings.DefaultHandshakeTimeoutSeconds);
        if (options.HandshakeTimeout is { } h)
        {
            if (h.Trim().Equals("off", StringComparison.OrdinalIgnoreCase))
            {
                handshakeTimeout = null;
            }
            else if (int.TryParse(h, NumberStyles.None, CultureInfo.InvariantCulture, out var seconds) && seconds is >= 1 and <= 3600)
            {
                handshakeTimeout = TimeSpan.FromSeconds(seconds);
            }
            else
            {
                problems.Add($"HandshakeTimeout: '{h}' is not allowed; allowed: seconds from 1 to 3600, or 'off'");
            }
        }
        var maxBufferedBytes = ServerSettings.DefaultMaxBufferedBytes;
        if (options.MaxBufferedBytes is { } b)
        {
            if (SizeParser.TryParse(b, out var size) && size >= MinBufferedBytes && size <= MaxBufferedBytesLimit)
            {
                maxBufferedBytes = size;
            }
            else
            {
                problems.Add($"MaxBufferedBytes: '{b}' is not allowed; allowed: a size from 32M (one largest request) to 64G, e.g. 256M or 1G");
            }
        }
        var verbose = ParseBool("Verbose", options.Verbose, false, problems);
        var tls = ValidateTls(options, problems);
        var backingRoot = ValidateBackingRoot("BackingRoot", options.BackingRoot, problems);

        var exports = new List<ExportSettings>();
        var names = new HashSet<string>(StringComparer.Ordinal);
        for (var i = 0; i < options.Exports.Count; i++)
        {
            var export = ValidateExport($"Exports:{i}", options.Exports[i], backingRoot, problems);
            if (export is null)
            {
                continue;
            }
            if (!names.Add(export.Name))
            {
                problems.Add($"Exports:{i}:Name: export name '{export.Name}' is used twice; allowed: unique names");
                continue;
            }
            exports.Add(export);
        }
        var control = string.IsNullOrWhiteSpace(options.Control) ? null : options.Control;
        for (var i = 0; i < exports.Count && control is null; i++)
        {
            if (exports[i].Inactive)
            {
                problems.Add($"Exports:{i}:Inactive: true needs a control socket to be activated; allowed: false, or set Control (--control PATH)");
            }
        }
        if (options.Exports.Count == 0)
        {
            problems.Add("Exports: no export; allowed: an IMAGE argument, or a config file with Exports: [{\"Path\": ...}]");
        }
        var defaultExport = exports.Count > 0 ? exports[0].Name : "";
        if (!string.IsNullOrEmpty(options.DefaultExport))
        {
            if (names.Contains(options.DefaultExport))
            {
                defaultExport = options.DefaultExport;
            }
            else if (exports.Count > 0)
            {
                problems.Add($"DefaultExport: '{options.DefaultExport}' is not an export; allowed: {string.Join(", ", names)}");
            }
        }
        if (problems.Count > 0)
        {
            return null;
        }
        return new ServerSettings
        {
            TcpEndPoints = endPoints,
            SocketPath = socket,
            Exports = exports,
            DefaultExport = defaultExport,
            MaxInFlight = maxInFlight,
            MaxConnections = maxConnections,
            HandshakeTimeout = handshakeTimeout,
            MaxBufferedBytes = maxBufferedBytes,
            Verbose = verbose,
            Tls = tls,
            ControlPath = control,
        };
    }

    public static readonly string[] TlsModes = ["off", "on", "require"];

    private static TlsSettings? ValidateTls(NbdQcowOptions options, List<string> problems)
    {
        var mode = TlsMode.Off;
        if (options.Tls is { } text)
        {
            switch (text.Trim().ToLowerInvariant())
            {
                case "off" or "false" or "no" or "0":
                    mode = TlsMode.Off;
                    break;
                case "on" or "true" or "yes" or "1":
                    mode = TlsMode.On;
                    break;
                case "require":
                    mode = TlsMode.Require;
                    break;
                default:
                    problems.Add($"Tls: '{text}' is not allowed; allowed: {string.Join(", ", TlsModes)}");
                    return null;
            }
        }
        var verifyPeer = ParseBool("TlsVerifyPeer", options.TlsVerifyPeer, false, problems);
        var directory = string.IsNullOrWhiteSpace(options.TlsCertificates) ? null : options.TlsCertificates;
        if (mode == TlsMode.Off)
        {
            if (verifyPeer)
            {
                problems.Add("TlsVerifyPeer: needs TLS; allowed: false while Tls is off, or set Tls to on or require");
            }
            return null;
        }
        if (directory is null)
        {
            problems.Add($"TlsCertificates: missing; required when Tls is {mode.ToString().ToLowerInvariant()}: a folder with " +
                         $"{TlsCertificateLoader.ServerCertificateFile}, {TlsCertificateLoader.ServerKeyFile} and {TlsCertificateLoader.CaCertificateFile}");
            return null;
        }
        return TlsCertificateLoader.Load(mode, directory, verifyPeer, DateTime.Now, problems);
    }

    /// <summary>A folder that exists, as a full path; null when not set (the default: the folder of each image).</summary>
    private static string? ValidateBackingRoot(string key, string? text, List<string> problems)
    {
        if (string.IsNullOrWhiteSpace(text))
        {
            return null;
        }
        var full = Path.GetFullPath(text);
        if (!Directory.Exists(full))
        {
            problems.Add($"{key}: '{text}' is not an existing folder; allowed: a folder that backing files must lie in (after symlinks), " +
                         "or '/' for any (default: the folder of the served image)");
            return null;
        }
        return full;
    }

    private static ExportSettings? ValidateExport(string key, ExportOptions o, string? serverBackingRoot, List<string> problems)
    {
        var before = problems.Count;
        if (string.IsNullOrWhiteSpace(o.Path))
        {
            problems.Add($"{key}:Path: missing; allowed: the path of a raw or qcow2 image file");
            return null;
        }
        var name = string.IsNullOrEmpty(o.Name) ? ServerConfigurationLoader.DefaultExportName(o.Path) : o.Name;
        if (name.Length == 0 || Encoding.UTF8.GetByteCount(name) > 4096 || name.Contains('\0'))
        {
            problems.Add($"{key}:Name: '{name}' is not allowed; allowed: a non-empty name of at most 4096 bytes without NUL");
        }
        var cache = CacheMode.Writeback;
        if (o.Cache is not null && !CacheModeInfo.TryParse(o.Cache, out cache))
        {
            problems.Add($"{key}:Cache: '{o.Cache}' is not a cache mode; allowed: {string.Join(", ", CacheModeInfo.CliNames)}");
        }
        TimeSpan? maxDirtyAge = TimeSpan.FromMilliseconds(1000);
        if (o.MaxDirtyAge is { } age)
        {
            if (age.Trim().Equals("off", StringComparison.OrdinalIgnoreCase))
            {
                maxDirtyAge = null;
            }
            else if (long.TryParse(age, NumberStyles.None, CultureInfo.InvariantCulture, out var ms) && ms is > 0 and <= 24L * 3600 * 1000)
            {
                maxDirtyAge = TimeSpan.FromMilliseconds(ms);
            }
            else
            {
                problems.Add($"{key}:MaxDirtyAge: '{age}' is not allowed; allowed: milliseconds from 1 to 86400000, or 'off'");
            }
        }
        var readOnly = ParseBool($"{key}:ReadOnly", o.ReadOnly, false, problems);
        var journal = ParseBool($"{key}:Journal", o.Journal, false, problems);
        if (journal && cache == CacheMode.Unsafe)
        {
            // unsafe never syncs on request: the journal would only add writes, and the promise it makes would be empty.
            problems.Add($"{key}:Journal: true is not allowed with {key}:Cache unsafe; allowed: false, or another cache mode " +
                         "(writeback, none, writethrough, directsync)");
        }
        string? format = null;
        if (!string.IsNullOrWhiteSpace(o.Format))
        {
            format = o.Format.Trim().ToLowerInvariant();
            if (Array.IndexOf(Formats, format) < 0)
            {
                problems.Add($"{key}:Format: '{o.Format}' is not allowed; allowed: {string.Join(", ", Formats)} (or leave it out to probe)");
            }
        }
        long? createSize = null;
        if (!string.IsNullOrWhiteSpace(o.Create))
        {
            if (SizeParser.TryParse(o.Create, out var size) && size > 0)
            {
                createSize = size;
            }
            else
            {
                problems.Add($"{key}:Create: '{o.Create}' is not a size; allowed: a positive size such as 10G, 512M, 64K or bytes");
            }
        }
        var snapshot = string.IsNullOrWhiteSpace(o.Snapshot) ? null : o.Snapshot;
        var locking = ParseLocking($"{key}:Locking", o.Locking, readOnly || snapshot is not null, problems);
        var inactive = ParseBool($"{key}:Inactive", o.Inactive, false, problems);
        var bitmaps = new List<string>();
        foreach (var bitmap in o.Bitmaps ?? [])
        {
            if (string.IsNullOrEmpty(bitmap) || bitmap.Length > 1023)
            {
                problems.Add($"{key}:Bitmaps: '{bitmap}' is not a bitmap name; allowed: 1 to 1023 characters, as qemu-img bitmap names them");
            }
            else if (bitmaps.Contains(bitmap))
            {
                problems.Add($"{key}:Bitmaps: '{bitmap}' is named twice; allowed: each bitmap once");
            }
            else
            {
                bitmaps.Add(bitmap);
            }
        }
        var writeErrors = ParsePolicy($"{key}:WriteErrorPolicy", o.WriteErrorPolicy, WriteErrorPolicy.Report, problems);
        var readErrors = ParsePolicy($"{key}:ReadErrorPolicy", o.ReadErrorPolicy, ReadErrorPolicy.Report, problems);
        var retryTimeout = ExportSettings.DefaultErrorRetryTimeout;
        if (o.ErrorRetryTimeout is { } timeoutText)
        {
            if (long.TryParse(timeoutText, NumberStyles.None, CultureInfo.InvariantCulture, out var ms) && ms is >= 100 and <= 24L * 3600 * 1000)
                retryTimeout = TimeSpan.FromMilliseconds(ms);
            else
                problems.Add($"{key}:ErrorRetryTimeout: '{timeoutText}' is not allowed; allowed: milliseconds from 100 to 86400000");
        }
        var backingRoot = o.BackingRoot is null ? serverBackingRoot : ValidateBackingRoot($"{key}:BackingRoot", o.BackingRoot, problems);
        if (problems.Count > before)
        {
            return null;
        }
        return new ExportSettings
        {
            Name = name,
            Path = o.Path,
            Description = string.IsNullOrEmpty(o.Description) ? null : o.Description,
            CacheMode = cache,
            // An internal snapshot is served read-only.
            ReadOnly = readOnly || snapshot is not null,
            MaxDirtyAge = maxDirtyAge,
            Journal = journal,
            Snapshot = snapshot,
            Format = format,
            CreateSize = createSize,
            Locking = locking,
            Inactive = inactive,
            Bitmaps = bitmaps,
            WriteErrorPolicy = writeErrors,
            ReadErrorPolicy = readErrors,
            ErrorRetryTimeout = retryTimeout,
            BackingRoot = backingRoot,
            KeyFile = string.IsNullOrEmpty(o.KeyFile) ? null : System.IO.Path.GetFullPath(o.KeyFile),
        };
    }

    /// <summary>Policy names are the enum names in lower case: report, enospc, retry, stop.</summary>
    private static TPolicy ParsePolicy<TPolicy>(string key, string? text, TPolicy fallback, List<string> problems) where TPolicy : struct, Enum
    {
        if (text is null) return fallback;
        var trimmed = text.Trim();
        if (trimmed.Length > 0 && char.IsLetter(trimmed[0]) && Enum.TryParse<TPolicy>(trimmed, ignoreCase: true, out var policy)) return policy;
        var allowed = new List<string>();
        foreach (var name in Enum.GetNames<TPolicy>()) allowed.Add(name.ToLowerInvariant());
        problems.Add($"{key}: '{text}' is not allowed; allowed: {string.Join(", ", allowed)}");
        return fallback;
    }

    public static readonly string[] LockingModes = ["on", "off", "force-share"];

    private static ImageLocking ParseLocking(string key, string? text, bool readOnly, List<string> problems)
    {
        switch (text?.Trim().ToLowerInvariant())
        {
            case null or "" or "on" or "true" or "yes" or "1":
                return ImageLocking.On;
            case "off" or "false" or "no" or "0":
                return ImageLocking.Off;
            case "force-share":
                if (!readOnly)
                {
                    // As qemu: sharing writes with other writers is never safe, so force-share is for readers only.
                    problems.Add($"{key}: force-share needs a read-only export; allowed: on or off, or set ReadOnly to true (--read-only)");
                }
                return ImageLocking.ForceShare;
            default:
                problems.Add($"{key}: '{text}' is not allowed; allowed: {string.Join(", ", LockingModes)}");
                return ImageLocking.On;
        }
    }

    private static bool ParseBool(string key, string? text, bool fallback, List<string> problems)
    {
        if (text is null)
        {
            return fallback;
        }
        switch (text.Trim().ToLowerInvariant())
        {
            case "true" or "yes" or "on" or "1":
                return true;
            case "false" or "no" or "off" or "0":
                return false;
            default:
                problems.Add($"{key}: '{text}' is not allowed; allowed: true, false");
                return fallback;
        }
    }
}
