using System.Net;
using System.Text;
using Microsoft.Extensions.Configuration;
using NbdQcow.Cache;
using NbdQcow.Config.Settings;
using NbdQcow.HostIo;

namespace NbdQcow.Config;

/// <summary>
/// Turns the layered configuration into <see cref="ServerSettings"/>, collecting one message per bad key. Each
/// setting's own check comes from its declaration (<see cref="ServeSettings"/>); what is checked here is what
/// depends on several settings at once.
/// </summary>
public static class ServerSettingsValidator
{
    public const string DefaultListen = "127.0.0.1:10809";

    public const int MaxConnectionsLimit = 65536;

    /// <summary>One request of the largest size (32 MiB) must always fit.</summary>
    public const long MinBufferedBytes = 32L * 1024 * 1024;

    public const long MaxBufferedBytesLimit = 64L * 1024 * 1024 * 1024;

    public static readonly string[] TlsModes = ["off", "on", "require"];

    public static readonly string[] LockingModes = ["on", "off", "force-share"];

    /// <param name="listenGiven">False when no layer set Listen: the default applies unless a Unix socket was asked for.</param>
    /// <param name="socketActivated">Listening sockets come from the service manager: no default address, none required.</param>
    /// <param name="formats">Image format names allowed for Format (the image library's registry); null accepts any name, left to the image opener.</param>
    public static ServerSettings? Validate(IConfiguration configuration, bool listenGiven, List<string> problems, bool socketActivated = false,
        IReadOnlyCollection<string>? formats = null)
    {
        var endPoints = new List<IPEndPoint>();
        var listen = listenGiven ? configuration[ServeSettings.Listen.Key]
            : (string.IsNullOrEmpty(configuration[ServeSettings.Socket.Key]) && !socketActivated ? DefaultListen : null);
        if (!string.IsNullOrWhiteSpace(listen) && !listen.Trim().Equals("off", StringComparison.OrdinalIgnoreCase))
        {
            foreach (var part in listen.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
            {
                if (EndPointParser.TryParse(part, out var endPoint))
                    endPoints.Add(endPoint);
                else
                    problems.Add($"Listen: '{part}' is not HOST:PORT; allowed: an IP address or localhost with a port, e.g. 127.0.0.1:10809 or [::1]:10809, or 'off'");
            }
        }
        if (endPoints.Count == 0 && string.IsNullOrWhiteSpace(configuration[ServeSettings.Socket.Key]) && !socketActivated && problems.Count == 0)
            problems.Add("Listen: nothing to listen on; allowed: HOST:PORT, or set Socket to a Unix socket path");

        var settings = new ServerSettings { TcpEndPoints = endPoints, Exports = [], DefaultExport = "" };
        foreach (var setting in ServeSettings.All)
        {
            if (setting.Scope == SettingScope.Server)
                settings = (ServerSettings)setting.Apply(settings, setting.Key, Values(configuration, setting), problems);
        }

        var tls = ValidateTls(configuration, problems);
        var backingRoot = ValidateBackingRoot(ServeSettings.BackingRoot.Key, configuration[ServeSettings.BackingRoot.Key], problems);

        var exports = new List<ExportSettings>();
        var names = new HashSet<string>(StringComparer.Ordinal);
        var declared = configuration.GetSection(ServeSettings.ExportsKey).GetChildren().Where(c => int.TryParse(c.Key, out _)).ToList();
        foreach (var section in declared)
        {
            var export = ValidateExport(section, backingRoot, formats, problems);
            if (export is null)
                continue;
            if (!names.Add(export.Name))
            {
                problems.Add($"{section.Path}:Name: export name '{export.Name}' is used twice; allowed: unique names");
                continue;
            }
            exports.Add(export);
        }
        for (var i = 0; i < exports.Count && settings.ControlPath is null; i++)
        {
            if (exports[i].Inactive)
                problems.Add($"Exports:{i}:Inactive: true needs a control socket to be activated; allowed: false, or set Control (--control PATH)");
        }
        if (declared.Count == 0)
            problems.Add("Exports: no export; allowed: an IMAGE argument, or a config file with Exports: [{\"Path\": ...}]");
        var defaultExport = exports.Count > 0 ? exports[0].Name : "";
        if (configuration[ServeSettings.DefaultExport.Key] is { Length: > 0 } asked)
        {
            if (names.Contains(asked))
                defaultExport = asked;
            else if (exports.Count > 0)
                problems.Add($"DefaultExport: '{asked}' is not an export; allowed: {string.Join(", ", names)}");
        }
        if (problems.Count > 0)
            return null;
        return settings with { Exports = exports, DefaultExport = defaultExport, Tls = tls };
    }

    /// <summary>A setting's value(s) in a section: null when not set; a list's items in order.</summary>
    private static List<string>? Values(IConfiguration section, Setting setting)
    {
        if (!setting.IsList)
            return section[setting.Key] is { } value ? [value] : null;
        var items = section.GetSection(setting.Key).GetChildren().Select(c => c.Value).OfType<string>().ToList();
        return items.Count == 0 && !section.GetSection(setting.Key).Exists() ? null : items;
    }

    private static TlsSettings? ValidateTls(IConfiguration configuration, List<string> problems)
    {
        var mode = TlsMode.Off;
        if (configuration[ServeSettings.Tls.Key] is { } text)
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
        var verifyPeer = false;
        if (configuration[ServeSettings.TlsVerifyPeer.Key] is { } verifyText)
        {
            var parsed = SettingParsers.Bool(verifyText);
            if (parsed.Problem is { } problem)
                problems.Add($"{ServeSettings.TlsVerifyPeer.Key}: {problem}");
            verifyPeer = parsed.Value;
        }
        var directory = configuration[ServeSettings.TlsCertificates.Key] is { } folder && !string.IsNullOrWhiteSpace(folder) ? folder : null;
        if (mode == TlsMode.Off)
        {
            if (verifyPeer)
                problems.Add("TlsVerifyPeer: needs TLS; allowed: false while Tls is off, or set Tls to on or require");
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
            return null;
        var full = Path.GetFullPath(text);
        if (!Directory.Exists(full))
        {
            problems.Add($"{key}: '{text}' is not an existing folder; allowed: a folder that backing files must lie in (after symlinks), " +
                         "or '/' for any (default: the folder of the served image)");
            return null;
        }
        return full;
    }

    private static ExportSettings? ValidateExport(IConfigurationSection section, string? serverBackingRoot, IReadOnlyCollection<string>? formats,
        List<string> problems)
    {
        var key = $"{ServeSettings.ExportsKey}:{section.Key}";
        var before = problems.Count;
        var path = section[ServeSettings.Path.Key];
        if (string.IsNullOrWhiteSpace(path))
        {
            problems.Add($"{key}:Path: missing; allowed: the path of a raw or qcow2 image file");
            return null;
        }
        var given = section[ServeSettings.Name.Key];
        var name = string.IsNullOrEmpty(given) ? ServerConfigurationLoader.DefaultExportName(path) : given;
        if (name.Length == 0 || Encoding.UTF8.GetByteCount(name) > 4096 || name.Contains('\0'))
            problems.Add($"{key}:Name: '{name}' is not allowed; allowed: a non-empty name of at most 4096 bytes without NUL");

        var export = new ExportSettings { Name = name, Path = path };
        foreach (var setting in ServeSettings.All)
        {
            if (setting.AtExportLevel)
                export = (ExportSettings)setting.Apply(export, $"{key}:{setting.Key}", Values(section, setting), problems);
        }

        if (export.Journal && export.CacheMode == CacheMode.Unsafe)
        {
            // unsafe never syncs on request: the journal would only add writes, and the promise it makes would be empty.
            problems.Add($"{key}:Journal: true is not allowed with {key}:Cache unsafe; allowed: false, or another cache mode " +
                         "(writeback, none, writethrough, directsync)");
        }
        if (section[ServeSettings.Format.Key] is { } formatText && !string.IsNullOrWhiteSpace(formatText))
        {
            var format = formatText.Trim().ToLowerInvariant();
            if (formats is not null && !formats.Contains(format))
                problems.Add($"{key}:Format: '{formatText}' is not allowed; allowed: {string.Join(", ", formats)} (or leave it out to probe)");
            export = export with { Format = format };
        }
        // An internal snapshot is served read-only.
        export = export with { ReadOnly = export.ReadOnly || export.Snapshot is not null };
        if (export.Locking == ImageLocking.ForceShare && !export.ReadOnly)
        {
            // As qemu: sharing writes with other writers is never safe, so force-share is for readers only.
            problems.Add($"{key}:Locking: force-share needs a read-only export; allowed: on or off, or set ReadOnly to true (--read-only)");
        }
        var backingRoot = section[ServeSettings.BackingRoot.Key] is { } root
            ? ValidateBackingRoot($"{key}:BackingRoot", root, problems)
            : serverBackingRoot;
        return problems.Count > before ? null : export with { BackingRoot = backingRoot };
    }
}
