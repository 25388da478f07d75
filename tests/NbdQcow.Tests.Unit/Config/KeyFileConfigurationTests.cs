using NbdQcow.Config;

namespace NbdQcow.Tests.Unit.Config;

/// <summary>KeyFile: per export in a config file or the environment, --key-file on serve; kept as a full path.</summary>
public sealed class KeyFileConfigurationTests
{
    private static readonly KeyValuePair<string, string?>[] NoEnvironment = [];

    [Fact]
    public void Key_file_defaults_to_none_and_comes_from_the_command_line_the_environment_or_a_config_file()
    {
        Assert.Null(ServerConfigurationLoader.Load(null, new ServeOverrides { ImagePath = "a.qcow2" }, NoEnvironment).Exports[0].KeyFile);
        Assert.Equal("/etc/nbdqcow/a.key", ServerConfigurationLoader.Load(null,
            new ServeOverrides { ImagePath = "a.qcow2", ["KeyFile"] = "/etc/nbdqcow/a.key" }, NoEnvironment).Exports[0].KeyFile);
        Assert.Equal(Path.GetFullPath("rel.key"), ServerConfigurationLoader.Load(null, new ServeOverrides { ImagePath = "a.qcow2" },
            [new("NBDQCOW__EXPORTS__0__KEYFILE", "rel.key")]).Exports[0].KeyFile);

        string config = Path.Combine(Path.GetTempPath(), $"nbdqcow-keyfile-{Guid.NewGuid():N}.json");
        File.WriteAllText(config, """{ "Exports": [ { "Path": "/srv/a.qcow2", "KeyFile": "/srv/a.key" }, { "Path": "/srv/b.qcow2" } ] }""");
        try
        {
            var exports = ServerConfigurationLoader.Load(config, new ServeOverrides(), NoEnvironment).Exports;
            Assert.Equal("/srv/a.key", exports[0].KeyFile);
            Assert.Null(exports[1].KeyFile);
        }
        finally
        {
            File.Delete(config);
        }
    }
}
