using NbdQcow.Config;
using NbdQcow.Config.Settings;

namespace NbdQcow.Tests.Unit.Config;

/// <summary>The settings are declared once; what is derived from the declarations stays in step with them.</summary>
public sealed class SettingDeclarationTests
{
    private static readonly KeyValuePair<string, string?>[] NoEnvironment = [];

    [Fact]
    public void Readme_key_table_is_the_one_the_declarations_give()
    {
        var readme = File.ReadAllLines(Path.Combine(RepositoryRoot.Path, "README.md"));
        var start = Array.IndexOf(readme, "| key | meaning | allowed values (default) |");
        Assert.True(start >= 0, "README.md has no settings key table");
        var rows = readme.Skip(start + 2).TakeWhile(line => line.StartsWith('|')).ToList();
        var expected = ServeSettings.ReadmeRows().ToList();
        Assert.True(expected.SequenceEqual(rows), "README.md's key table differs from the declarations in config/Settings/ServeSettings.cs; it should read:\n"
            + string.Join("\n", expected));
    }

    [Fact]
    public void Every_declared_key_is_accepted_from_a_config_file_and_nothing_else()
    {
        foreach (var setting in ServeSettings.All)
        {
            Assert.True(ServeSettings.ServerKeys.Contains(setting.Key) || ServeSettings.ExportKeys.Contains(setting.Key), setting.Key);
        }
        var refusal = Assert.Throws<ConfigurationException>(() => ServerConfigurationLoader.Load(null,
            new ServeOverrides { ImagePath = "a.img" }, [new("NBDQCOW__EXPORTS__0__NOSUCHKEY", "1")]));
        Assert.Contains("Exports:0:NOSUCHKEY: unknown key; allowed: ", refusal.Message);
    }

    [Fact]
    public void Every_command_line_spelling_is_unique_and_reaches_its_key()
    {
        var spellings = ServeSettings.All.SelectMany(s => s.Cli.Select(c => c.Name)).ToList();
        Assert.Equal(spellings.Count, spellings.Distinct().Count());
        foreach (var setting in ServeSettings.All.Where(s => s.Cli.Count > 0 && s.AtExportLevel && !s.IsList))
        {
            var overrides = new ServeOverrides { ImagePath = "a.img" };
            overrides.Set(setting.Key, "?");
            var refused = Record.Exception(() => ServerConfigurationLoader.Load(null, overrides, NoEnvironment));
            // A value of "?" is refused by every checked export setting, naming its key.
            if (refused is ConfigurationException problems)
                Assert.Contains($"Exports:0:{setting.Key}", problems.Message);
        }
    }
}
