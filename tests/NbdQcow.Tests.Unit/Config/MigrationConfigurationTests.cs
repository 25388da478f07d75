using NbdQcow.Config;
using NbdQcow.HostIo;

namespace NbdQcow.Tests.Unit.Config;

/// <summary>
/// Migration settings: the export key Locking (CLI --no-lock / --force-share), on by default and force-share only for
/// read-only exports; Inactive (--inactive) only with a Control socket (--control).
/// </summary>
public sealed class MigrationConfigurationTests
{
    private static readonly KeyValuePair<string, string?>[] NoEnvironment = [];

    [Fact]
    public void Locking_is_on_by_default_and_the_command_line_turns_it_off_or_to_force_share_for_a_read_only_export()
    {
        Assert.Equal(ImageLocking.On, ServerConfigurationLoader.Load(null, new ServeOverrides { ImagePath = "a.img" }, NoEnvironment).Exports[0].Locking);
        Assert.Equal(ImageLocking.Off,
            ServerConfigurationLoader.Load(null, new ServeOverrides { ImagePath = "a.img", ["Locking"] = "off" }, NoEnvironment).Exports[0].Locking);
        Assert.Equal(ImageLocking.ForceShare,
            ServerConfigurationLoader.Load(null, new ServeOverrides { ImagePath = "a.img", ["Locking"] = "force-share", ["ReadOnly"] = "true" }, NoEnvironment)
                .Exports[0].Locking);
    }

    [Fact]
    public void Force_share_on_a_writable_export_and_an_unknown_value_are_refused_naming_the_key()
    {
        var writable = Assert.Throws<ConfigurationException>(() =>
            ServerConfigurationLoader.Load(null, new ServeOverrides { ImagePath = "a.img", ["Locking"] = "force-share" }, NoEnvironment));
        Assert.Contains("Exports:0:Locking: force-share needs a read-only export", writable.Message);
        var unknown = Assert.Throws<ConfigurationException>(() => ServerConfigurationLoader.Load(null, new ServeOverrides { ImagePath = "a.img" },
            [new("NBDQCOW__EXPORTS__0__LOCKING", "sometimes")]));
        Assert.Contains("Exports:0:Locking: 'sometimes' is not allowed; allowed: on, off, force-share", unknown.Message);
    }

    [Fact]
    public void Inactive_is_accepted_with_a_control_socket_and_refused_without_one()
    {
        var settings = ServerConfigurationLoader.Load(null, new ServeOverrides { ImagePath = "a.img", ["Inactive"] = "true", ["Control"] = "/run/x.ctl" }, NoEnvironment);
        Assert.True(settings.Exports[0].Inactive);
        Assert.Equal("/run/x.ctl", settings.ControlPath);
        Assert.Null(ServerConfigurationLoader.Load(null, new ServeOverrides { ImagePath = "a.img" }, NoEnvironment).ControlPath);
        var refusal = Assert.Throws<ConfigurationException>(() =>
            ServerConfigurationLoader.Load(null, new ServeOverrides { ImagePath = "a.img", ["Inactive"] = "true" }, NoEnvironment));
        Assert.Contains("Exports:0:Inactive: true needs a control socket", refusal.Message);
    }

    [Fact]
    public void Migration_destination_example_config_loads_as_one_inactive_export_with_a_control_socket()
    {
        var root = new DirectoryInfo(AppContext.BaseDirectory);
        while (root is not null && !File.Exists(Path.Combine(root.FullName, "NbdQcow.sln"))) root = root.Parent;
        Assert.NotNull(root);
        var settings = ServerConfigurationLoader.Load(Path.Combine(root.FullName, "config", "examples", "migration-destination.json"),
            new ServeOverrides(), NoEnvironment);
        var export = Assert.Single(settings.Exports);
        Assert.Equal(("vm1", true, ImageLocking.On), (export.Name, export.Inactive, export.Locking));
        Assert.Equal("/run/nbdqcow/vm1.ctl", settings.ControlPath);
    }
}
