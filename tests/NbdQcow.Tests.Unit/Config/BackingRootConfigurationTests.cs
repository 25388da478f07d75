using NbdQcow.Config;

namespace NbdQcow.Tests.Unit.Config;

/// <summary>BackingRoot: server-wide and per export in config, --backing-root on serve; an existing folder or refused naming the key.</summary>
public sealed class BackingRootConfigurationTests
{
    private static readonly KeyValuePair<string, string?>[] NoEnvironment = [];

    [Fact]
    public void Backing_root_defaults_to_none_and_comes_from_the_command_line_the_server_wide_key_or_the_export_key()
    {
        string tmp = Path.GetTempPath().TrimEnd('/');
        Assert.Null(ServerConfigurationLoader.Load(null, new ServeOverrides { ImagePath = "a.img" }, NoEnvironment).Exports[0].BackingRoot);
        Assert.Equal("/", ServerConfigurationLoader.Load(null, new ServeOverrides { ImagePath = "a.img", ["BackingRoot"] = "/" }, NoEnvironment).Exports[0].BackingRoot);
        Assert.Equal(tmp, ServerConfigurationLoader.Load(null, new ServeOverrides { ImagePath = "a.img" },
            [new("NBDQCOW__BACKINGROOT", tmp)]).Exports[0].BackingRoot);
        Assert.Equal("/", ServerConfigurationLoader.Load(null, new ServeOverrides { ImagePath = "a.img" },
            [new("NBDQCOW__BACKINGROOT", tmp), new("NBDQCOW__EXPORTS__0__BACKINGROOT", "/")]).Exports[0].BackingRoot);
    }

    [Fact]
    public void Backing_root_that_is_not_an_existing_folder_is_refused_naming_the_key()
    {
        var error = Assert.Throws<ConfigurationException>(() =>
            ServerConfigurationLoader.Load(null, new ServeOverrides { ImagePath = "a.img", ["BackingRoot"] = "/no/such/folder" }, NoEnvironment));
        Assert.Contains("Exports:0:BackingRoot: '/no/such/folder' is not an existing folder", error.Message);
    }
}
