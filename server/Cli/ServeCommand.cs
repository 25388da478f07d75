using System.CommandLine;
using NbdQcow.Config;
using NbdQcow.Config.Settings;

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
        var export = new Option<string?>("--export")
        {
            HelpName = "NAME",
            Description = "Export name for IMAGE (default: the file name without extension); also served as the default export \"\".",
        };
        var config = new Option<string?>("--config")
        {
            HelpName = "FILE",
            Description = "JSON config file declaring listen addresses and exports (see config/examples/)."
        };
        // Every other option is a setting's spelling, declared once with the setting.
        var settingOptions = new List<(Setting Setting, CliSpelling Spelling, Option Option)>();
        foreach (var setting in ServeSettings.All)
        {
            foreach (var spelling in setting.Cli)
            {
                Option option = spelling.Shape switch
                {
                    CliShape.Flag => new Option<bool>(spelling.Name) { Description = spelling.Description },
                    CliShape.List => new Option<string[]>(spelling.Name) { HelpName = spelling.HelpName, Description = spelling.Description },
                    _ => new Option<string?>(spelling.Name) { HelpName = spelling.HelpName, Description = spelling.Description },
                };
                if (spelling.Completions is { } completions)
                    option.CompletionSources.Add([.. completions]);
                settingOptions.Add((setting, spelling, option));
            }
        }
        var pidFile = new Option<string?>("--pid-file") { HelpName = "FILE", Description = "Write the server's pid to FILE once it listens; removed at exit." };
        var fork = new Option<bool>(Service.Daemon.ForkOption) { Description = "Run in the background: return (exit 0) once the server listens, or with its error." };
        var command = new Command("serve", "Serve an image (or the exports of a config file) over NBD until SIGTERM/SIGINT.")
        {
            pidFile, fork, image, export, config,
        };
        foreach (var (_, _, option) in settingOptions)
        {
            command.Options.Add(option);
        }
        command.SetAction(parseResult =>
        {
            if (parseResult.GetValue(fork) && !Service.Daemon.IsChild) return Service.Daemon.RunParent(Program.Arguments);
            if (Service.Daemon.IsChild) Service.Daemon.DetachSession();
            // systemd socket activation: only when the command line names no listener of its own.
            var overrides = new ServeOverrides { ExportName = parseResult.GetValue(export) };
            string? firstSpelling = null;
            foreach (var (setting, spelling, option) in settingOptions)
            {
                string? value = option switch
                {
                    Option<bool> flag => parseResult.GetValue(flag) ? spelling.FlagValue : null,
                    Option<string?> text => parseResult.GetValue(text),
                    _ => null,
                };
                if (option is Option<string[]> list)
                {
                    overrides.SetList(setting.Key, parseResult.GetValue(list));
                    continue;
                }
                if (value is null)
                    continue;
                if (overrides[setting.Key] is not null)
                {
                    // Two flags of one setting (--no-lock, --force-share) would each set it differently.
                    Console.Error.WriteLine($"nbdqcow serve: {firstSpelling} and {spelling.Name} exclude each other; allowed: one of them");
                    return 2;
                }
                firstSpelling = spelling.Name;
                overrides.Set(setting.Key, value);
            }
            var activated = overrides[ServeSettings.Listen.Key] is null && overrides[ServeSettings.Socket.Key] is null && Service.SocketActivation.IsOffered();
            overrides = overrides with { SocketActivated = activated };
            var imagePath = parseResult.GetValue(image);
            if (imagePath is null && parseResult.GetValue(config) is null && !EnvironmentDeclaresExports())
            {
                // Nothing named: serve (and on first use create) a default image, so one command gets a user going.
                imagePath = DefaultImage;
                var createSize = overrides[ServeSettings.Create.Key] ?? DefaultImageSize;
                overrides.Set(ServeSettings.Create.Key, createSize);
                Console.Error.WriteLine($"nbdqcow serve: no IMAGE given; serving {DefaultImage} (created with {createSize} when missing)");
            }
            overrides = overrides with { ImagePath = imagePath };
            ServerSettings settings;
            try
            {
                settings = ServerConfigurationLoader.Load(parseResult.GetValue(config), overrides, formats: NbdQcow.Image.ImageFormats.Names);
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
