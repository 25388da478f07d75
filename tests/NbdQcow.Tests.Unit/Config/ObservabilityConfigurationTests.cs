using System.Net;
using NbdQcow.Config;

namespace NbdQcow.Tests.Unit.Config;

/// <summary>Metrics and Quiet: from --metrics/--quiet or the environment; a metrics address other than IP:PORT refused naming the key.</summary>
public sealed class ObservabilityConfigurationTests
{
    private static readonly KeyValuePair<string, string?>[] NoEnvironment = [];

    [Fact]
    public void Metrics_are_off_by_default_and_listen_where_the_command_line_or_the_environment_says()
    {
        var defaults = ServerConfigurationLoader.Load(null, new ServeOverrides { ImagePath = "a.img" }, NoEnvironment);
        Assert.Null(defaults.MetricsEndPoint);
        Assert.False(defaults.Quiet);
        var flags = ServerConfigurationLoader.Load(null, new ServeOverrides { ImagePath = "a.img", ["Metrics"] = "127.0.0.1:9464", ["Quiet"] = "true" }, NoEnvironment);
        Assert.Equal(new IPEndPoint(IPAddress.Loopback, 9464), flags.MetricsEndPoint);
        Assert.True(flags.Quiet);
        var environment = ServerConfigurationLoader.Load(null, new ServeOverrides { ImagePath = "a.img" },
            [new("NBDQCOW__METRICS", "[::]:9464"), new("NBDQCOW__QUIET", "true")]);
        Assert.Equal(new IPEndPoint(IPAddress.IPv6Any, 9464), environment.MetricsEndPoint);
        Assert.True(environment.Quiet);
        Assert.Null(ServerConfigurationLoader.Load(null, new ServeOverrides { ImagePath = "a.img", ["Metrics"] = "off" }, NoEnvironment).MetricsEndPoint);
    }

    [Theory]
    [InlineData("metrics.example:9464")]
    [InlineData("9464")]
    [InlineData("127.0.0.1:0")]
    public void A_metrics_address_without_an_ip_or_a_port_is_refused_naming_the_key(string address)
    {
        var error = Assert.Throws<ConfigurationException>(() =>
            ServerConfigurationLoader.Load(null, new ServeOverrides { ImagePath = "a.img", ["Metrics"] = address }, NoEnvironment));
        Assert.Contains($"Metrics: '{address}' is not allowed", error.Message);
    }
}
