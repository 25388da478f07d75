using Microsoft.Extensions.Configuration;
using NbdQcow.Config.Settings;

namespace NbdQcow.Config;

/// <summary>
/// Builds the server configuration in layers: JSON file, then NBDQCOW__* environment variables
/// (NBDQCOW__LISTEN, NBDQCOW__EXPORTS__0__CACHE, ...), then command-line overrides; then validates it.
/// </summary>
public static class ServerConfigurationLoader
{
    public const string EnvironmentPrefix = "NBDQCOW__";

    /// <param name="environment">Environment variables to use; null reads the process environment.</param>
    /// <param name="formats">Image format names a Format may take (the server passes the image registry's); null leaves the check to the opener.</param>
    public static ServerSettings Load(string? configFile, ServeOverrides overrides, IEnumerable<KeyValuePair<string, string?>>? environment = null,
        IReadOnlyCollection<string>? formats = null)
    {
        if (configFile is not null && !File.Exists(configFile))
        {
            throw new ConfigurationException([$"--config: file '{configFile}' does not exist"]);
        }
        var baseConfiguration = BuildBase(configFile, environment);
        // Exports declared with a Path by the file or environment; the IMAGE of the command line comes next,
        // so environment settings for an index without a Path (NBDQCOW__EXPORTS__0__CACHE) apply to the IMAGE.
        var exportCount = 0;
        foreach (var child in baseConfiguration.GetSection("Exports").GetChildren())
        {
            if (!string.IsNullOrEmpty(child["Path"]))
            {
                exportCount++;
            }
        }

        var cli = new Dictionary<string, string?>(StringComparer.OrdinalIgnoreCase);
        foreach (var setting in ServeSettings.All)
        {
            if (setting.Scope == SettingScope.Server)
                Put(cli, setting.Key, overrides[setting.Key]);
        }
        if (overrides.ImagePath is not null)
        {
            var prefix = $"Exports:{exportCount}:";
            cli[prefix + "Path"] = overrides.ImagePath;
            PutExport(cli, prefix, overrides, includeName: true);
            if (overrides.ExportName is not null || exportCount > 0)
            {
                // The image named on the command line is what a client gets for "".
                cli["DefaultExport"] = overrides.ExportName ?? DefaultExportName(overrides.ImagePath);
            }
        }
        else
        {
            for (var i = 0; i < exportCount; i++)
            {
                PutExport(cli, $"Exports:{i}:", overrides, includeName: false);
            }
            Put(cli, "DefaultExport", overrides.ExportName);
        }
        var configuration = new ConfigurationBuilder()
            .AddConfiguration(baseConfiguration)
            .AddInMemoryCollection(cli)
            .Build();

        var problems = new List<string>();
        CheckKnownKeys(configuration, problems);
        var firstProblem = problems.Count;
        var listenGiven = configuration[ServeSettings.Listen.Key] is not null;
        var settings = ServerSettingsValidator.Validate(configuration, listenGiven, problems, overrides.SocketActivated, formats);
        if (problems.Count > 0)
        {
            for (var i = firstProblem; i < problems.Count; i++) problems[i] = NameSource(configuration, baseConfiguration, cli, problems[i], configFile);
            throw new ConfigurationException(problems);
        }
        return settings!;
    }

    /// <summary>
    /// Appends where the value of a problem's key came from (the environment variable, the config file or the
    /// command line) and, for an export's key, the export's name: "Exports:0:Cache" alone does not say which to fix.
    /// </summary>
    private static string NameSource(IConfigurationRoot configuration, IConfigurationRoot baseConfiguration,
        Dictionary<string, string?> cli, string problem, string? configFile)
    {
        var colon = problem.IndexOf(": ", StringComparison.Ordinal);
        if (colon <= 0) return problem;
        var key = problem[..colon];
        string? source = cli.TryGetValue(key, out var given) && given is not null ? "command line" : null;
        foreach (var provider in baseConfiguration.Providers.Reverse())
        {
            if (source is not null) break;
            if (!provider.TryGet(key, out var value) || value is null) continue;
            source = provider switch
            {
                Microsoft.Extensions.Configuration.Json.JsonConfigurationProvider => $"config file {configFile}",
                _ => EnvironmentPrefix + key.Replace(":", "__", StringComparison.Ordinal).ToUpperInvariant(),
            };
        }
        var parts = key.Split(':');
        var name = parts.Length > 2 && parts[0] == "Exports"
            ? configuration[$"Exports:{parts[1]}:Name"] ?? (configuration[$"Exports:{parts[1]}:Path"] is { } path ? DefaultExportName(path) : null)
            : null;
        var export = name is null ? "" : $"export '{name}', ";
        return source is null && export.Length == 0 ? problem : $"{problem} ({export}from {source ?? "defaults"})";
    }

    /// <summary>Line and column (1-based) of the first syntax error of a JSON file, read as the configuration reader reads it.</summary>
    private static string? JsonErrorPosition(string? configFile)
    {
        if (configFile is null) return null;
        try
        {
            using var document = System.Text.Json.JsonDocument.Parse(File.ReadAllBytes(configFile),
                new System.Text.Json.JsonDocumentOptions { CommentHandling = System.Text.Json.JsonCommentHandling.Skip, AllowTrailingCommas = true });
            return null;
        }
        catch (System.Text.Json.JsonException ex) when (ex.LineNumber is { } line && ex.BytePositionInLine is { } column)
        {
            return $"line {line + 1}, column {column + 1}: {ex.Message.Split(" Path:", 2)[0].Split(" LineNumber:", 2)[0]}";
        }
        catch (IOException)
        {
            return null;
        }
    }

    /// <summary>Export name for an image path: the file name without its extension.</summary>
    public static string DefaultExportName(string imagePath) => Path.GetFileNameWithoutExtension(imagePath);

    private static IConfigurationRoot BuildBase(string? configFile, IEnumerable<KeyValuePair<string, string?>>? environment)
    {
        var builder = new ConfigurationBuilder();
        if (configFile is not null)
        {
            builder.AddJsonFile(Path.GetFullPath(configFile), optional: false, reloadOnChange: false);
        }
        if (environment is null)
        {
            builder.AddEnvironmentVariables(EnvironmentPrefix);
        }
        else
        {
            var translated = new Dictionary<string, string?>(StringComparer.OrdinalIgnoreCase);
            foreach (var (key, value) in environment)
            {
                if (key.StartsWith(EnvironmentPrefix, StringComparison.OrdinalIgnoreCase))
                {
                    translated[key[EnvironmentPrefix.Length..].Replace("__", ":", StringComparison.Ordinal)] = value;
                }
            }
            builder.AddInMemoryCollection(translated);
        }
        try
        {
            return builder.Build();
        }
        catch (Exception ex) when (ex is FormatException or InvalidDataException or IOException)
        {
            throw new ConfigurationException([$"--config: '{configFile}' is not valid JSON: {JsonErrorPosition(configFile) ?? ex.InnerException?.Message ?? ex.Message}"]);
        }
    }

    private static void PutExport(Dictionary<string, string?> cli, string prefix, ServeOverrides o, bool includeName)
    {
        if (includeName)
        {
            Put(cli, prefix + ServeSettings.Name.Key, o.ExportName);
        }
        foreach (var setting in ServeSettings.All)
        {
            if (!setting.AtExportLevel)
                continue;
            if (!setting.IsList)
            {
                Put(cli, prefix + setting.Key, o[setting.Key]);
                continue;
            }
            var items = o.List(setting.Key);
            for (var i = 0; items is not null && i < items.Count; i++)
            {
                Put(cli, $"{prefix}{setting.Key}:{i}", items[i]);
            }
        }
    }

    private static void Put(Dictionary<string, string?> cli, string key, string? value)
    {
        if (value is not null)
        {
            cli[key] = value;
        }
    }

    /// <summary>A misspelt key would otherwise be ignored silently.</summary>
    private static void CheckKnownKeys(IConfiguration configuration, List<string> problems)
    {
        foreach (var section in configuration.GetChildren())
        {
            if (!Contains(ServeSettings.ServerKeys, section.Key))
            {
                problems.Add($"{section.Path}: unknown key; allowed: {string.Join(", ", ServeSettings.ServerKeys)}");
                continue;
            }
            if (!section.Key.Equals(ServeSettings.ExportsKey, StringComparison.OrdinalIgnoreCase))
            {
                continue;
            }
            foreach (var export in section.GetChildren())
            {
                if (!int.TryParse(export.Key, out _))
                {
                    problems.Add($"{export.Path}: Exports must be a list (JSON array)");
                    continue;
                }
                foreach (var field in export.GetChildren())
                {
                    if (!Contains(ServeSettings.ExportKeys, field.Key))
                    {
                        problems.Add($"{field.Path}: unknown key; allowed: {string.Join(", ", ServeSettings.ExportKeys)}");
                    }
                }
            }
        }
    }

    private static bool Contains(IReadOnlyList<string> keys, string key)
    {
        foreach (var k in keys)
        {
            if (k.Equals(key, StringComparison.OrdinalIgnoreCase))
            {
                return true;
            }
        }
        return false;
    }
}
