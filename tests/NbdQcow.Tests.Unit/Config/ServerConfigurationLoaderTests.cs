using System.Net;
using NbdQcow.Cache;
using NbdQcow.Config;

namespace NbdQcow.Tests.Unit.Config;

public sealed class ServerConfigurationLoaderTests : IDisposable
{
    private static readonly KeyValuePair<string, string?>[] NoEnvironment = [];

    private readonly DirectoryInfo _dir = Directory.CreateTempSubdirectory("nbdqcow-config-test-");

    public void Dispose() => _dir.Delete(recursive: true);

    private string WriteConfig(string json)
    {
        var path = Path.Combine(_dir.FullName, $"config-{Guid.NewGuid():N}.json");
        File.WriteAllText(path, json);
        return path;
    }

    private static ConfigurationException Refused(Func<ServerSettings> load) => Assert.Throws<ConfigurationException>(() => load());

    [Fact]
    public void Image_alone_gives_defaults_loopback_port_10809_writeback_and_name_from_the_file()
    {
        var settings = ServerConfigurationLoader.Load(null, new ServeOverrides { ImagePath = "/images/disk.qcow2" }, NoEnvironment);

        Assert.Equal([new IPEndPoint(IPAddress.Loopback, 10809)], settings.TcpEndPoints);
        Assert.Null(settings.SocketPath);
        var export = Assert.Single(settings.Exports);
        Assert.Equal("disk", export.Name);
        Assert.Equal("disk", settings.DefaultExport);
        Assert.Equal(CacheMode.Writeback, export.CacheMode);
        Assert.Equal(TimeSpan.FromSeconds(1), export.MaxDirtyAge);
        Assert.False(export.ReadOnly);
        Assert.Null(export.Format);
    }

    [Fact]
    public void Connection_and_memory_limits_have_defaults_and_come_from_the_command_line_file_or_environment()
    {
        var defaults = ServerConfigurationLoader.Load(null, new ServeOverrides { ImagePath = "a.img" }, NoEnvironment);
        Assert.Equal((512, (TimeSpan?)TimeSpan.FromSeconds(10), 256L << 20),
            (defaults.MaxConnections, defaults.HandshakeTimeout, defaults.MaxBufferedBytes));

        var cli = ServerConfigurationLoader.Load(null, new ServeOverrides
        {
            ImagePath = "a.img",
            ["MaxConnections"] = "8",
            ["HandshakeTimeout"] = "off",
            ["MaxBufferedBytes"] = "1G",
        }, NoEnvironment);
        Assert.Equal((8, (TimeSpan?)null, 1L << 30), (cli.MaxConnections, cli.HandshakeTimeout, cli.MaxBufferedBytes));

        var file = WriteConfig("""{ "MaxConnections": "100", "HandshakeTimeout": "30", "Exports": [ { "Path": "b.img" } ] }""");
        var fromFile = ServerConfigurationLoader.Load(file, new ServeOverrides(),
            [new("NBDQCOW__MAXBUFFEREDBYTES", "64M")]);
        Assert.Equal((100, (TimeSpan?)TimeSpan.FromSeconds(30), 64L << 20),
            (fromFile.MaxConnections, fromFile.HandshakeTimeout, fromFile.MaxBufferedBytes));
    }

    [Fact]
    public void Bad_connection_and_memory_limits_are_refused_naming_the_key_and_what_is_allowed()
    {
        var refusal = Refused(() => ServerConfigurationLoader.Load(null, new ServeOverrides
        {
            ImagePath = "a.img",
            ["MaxConnections"] = "0",
            ["HandshakeTimeout"] = "10s",
            ["MaxBufferedBytes"] = "1M",
        }, NoEnvironment));
        Assert.Contains(refusal.Problems, p => p.StartsWith("MaxConnections: '0' is not allowed; allowed: an integer from 1", StringComparison.Ordinal));
        Assert.Contains(refusal.Problems, p => p.StartsWith("HandshakeTimeout: '10s' is not allowed; allowed: seconds from 1 to 3600, or 'off'", StringComparison.Ordinal));
        Assert.Contains(refusal.Problems, p => p.StartsWith("MaxBufferedBytes: '1M' is not allowed; allowed: a size from 32M", StringComparison.Ordinal));
    }

    [Fact]
    public void Command_line_options_describe_the_image_export()
    {
        var settings = ServerConfigurationLoader.Load(null, new ServeOverrides
        {
            ImagePath = "a.img",
            ExportName = "vm",
            ["Cache"] = "directsync",
            ["MaxDirtyAge"] = "off",
            ["ReadOnly"] = "true",
            ["Format"] = "raw",
            ["Create"] = "512M",
            ["Listen"] = "[::1]:0",
        }, NoEnvironment);

        var export = Assert.Single(settings.Exports);
        Assert.Equal(("vm", CacheMode.DirectSync, (TimeSpan?)null, true, false, "raw", (long?)(512L << 20)),
            (export.Name, export.CacheMode, export.MaxDirtyAge, export.ReadOnly, export.Journal, export.Format, export.CreateSize));
        Assert.Equal([new IPEndPoint(IPAddress.IPv6Loopback, 0)], settings.TcpEndPoints);
    }

    [Fact]
    public void Journal_is_accepted_from_the_command_line_and_refused_with_unsafe_naming_both_keys()
    {
        var settings = ServerConfigurationLoader.Load(null, new ServeOverrides { ImagePath = "a.img", ["Journal"] = "true" }, NoEnvironment);
        Assert.True(settings.Exports[0].Journal);
        var refusal = Refused(() => ServerConfigurationLoader.Load(null, new ServeOverrides { ImagePath = "a.img", ["Journal"] = "true", ["Cache"] = "unsafe" }, NoEnvironment));
        Assert.Contains("Exports:0:Journal", refusal.Message);
        Assert.Contains("Exports:0:Cache unsafe", refusal.Message);
    }

    [Fact]
    public void Socket_alone_disables_the_default_TCP_listener_but_an_explicit_listen_keeps_it()
    {
        var socketOnly = ServerConfigurationLoader.Load(null, new ServeOverrides { ImagePath = "a.img", ["Socket"] = "/tmp/x.sock" }, NoEnvironment);
        Assert.Empty(socketOnly.TcpEndPoints);
        Assert.Equal("/tmp/x.sock", socketOnly.SocketPath);

        var both = ServerConfigurationLoader.Load(null, new ServeOverrides { ImagePath = "a.img", ["Socket"] = "/tmp/x.sock", ["Listen"] = "127.0.0.1:1234" }, NoEnvironment);
        Assert.Equal([new IPEndPoint(IPAddress.Loopback, 1234)], both.TcpEndPoints);
    }

    [Fact]
    public void Config_file_declares_several_exports_and_the_example_file_is_valid()
    {
        var example = Path.Combine(RepositoryRoot.Path, "config", "examples", "two-exports.json");
        var settings = ServerConfigurationLoader.Load(example, new ServeOverrides(), NoEnvironment);

        Assert.Equal(["system", "iso", "scratch"], settings.Exports.Select(e => e.Name));
        Assert.Equal("system", settings.DefaultExport);
        Assert.False(settings.Exports[0].Journal);
        Assert.Equal((CacheMode.None, true, "raw"), (settings.Exports[1].CacheMode, settings.Exports[1].ReadOnly, settings.Exports[1].Format));
        Assert.Equal((20L << 30, (TimeSpan?)null, CacheMode.Unsafe), (settings.Exports[2].CreateSize!.Value, settings.Exports[2].MaxDirtyAge, settings.Exports[2].CacheMode));
        Assert.Equal("/run/nbdqcow/nbd.sock", settings.SocketPath);
    }

    [Fact]
    public void Environment_overrides_the_file_and_the_command_line_overrides_both()
    {
        var config = WriteConfig("""{ "Listen": "127.0.0.1:1", "Exports": [ { "Path": "a.img", "Cache": "writeback" }, { "Path": "b.img" } ] }""");
        var environment = new Dictionary<string, string?>
        {
            ["NBDQCOW__LISTEN"] = "127.0.0.1:2",
            ["NBDQCOW__EXPORTS__0__CACHE"] = "none",
            ["NBDQCOW__EXPORTS__1__CACHE"] = "writethrough",
            ["UNRELATED"] = "x",
        };

        var fromEnvironment = ServerConfigurationLoader.Load(config, new ServeOverrides(), environment);
        Assert.Equal(2, fromEnvironment.TcpEndPoints[0].Port);
        Assert.Equal([CacheMode.None, CacheMode.Writethrough], fromEnvironment.Exports.Select(e => e.CacheMode));

        var fromCommandLine = ServerConfigurationLoader.Load(config, new ServeOverrides { ["Listen"] = "127.0.0.1:3", ["Cache"] = "unsafe" }, environment);
        Assert.Equal(3, fromCommandLine.TcpEndPoints[0].Port);
        Assert.Equal([CacheMode.Unsafe, CacheMode.Unsafe], fromCommandLine.Exports.Select(e => e.CacheMode));
    }

    [Fact]
    public void Environment_settings_for_an_export_without_a_path_apply_to_the_image_of_the_command_line()
    {
        var environment = new Dictionary<string, string?> { ["NBDQCOW__EXPORTS__0__CACHE"] = "none" };
        var settings = ServerConfigurationLoader.Load(null, new ServeOverrides { ImagePath = "a.img" }, environment);
        Assert.Equal(CacheMode.None, Assert.Single(settings.Exports).CacheMode);
    }

    [Fact]
    public void Image_on_the_command_line_is_added_to_the_config_exports_and_becomes_the_default()
    {
        var config = WriteConfig("""{ "Exports": [ { "Path": "a.img", "Cache": "none" } ] }""");
        var settings = ServerConfigurationLoader.Load(config, new ServeOverrides { ImagePath = "/x/b.qcow2", ["Cache"] = "unsafe" }, NoEnvironment);
        Assert.Equal([("a", CacheMode.None), ("b", CacheMode.Unsafe)], settings.Exports.Select(e => (e.Name, e.CacheMode)));
        Assert.Equal("b", settings.DefaultExport);
    }

    [Fact]
    public void Bad_cache_mode_is_refused_naming_the_key_and_the_allowed_values()
    {
        var error = Refused(() => ServerConfigurationLoader.Load(null, new ServeOverrides { ImagePath = "a.img", ["Cache"] = "fast" }, NoEnvironment));
        var problem = Assert.Single(error.Problems);
        Assert.Contains("Exports:0:Cache", problem);
        Assert.Contains("'fast'", problem);
        Assert.Contains("writeback, writethrough, none, directsync, unsafe", problem);
    }

    [Theory]
    [InlineData("""{ "Listen": "10809", "Exports": [ { "Path": "a" } ] }""", "Listen")]
    [InlineData("""{ "Listen": "::1:10809", "Exports": [ { "Path": "a" } ] }""", "Listen")]
    [InlineData("""{ "Exports": [ { "Path": "a", "MaxDirtyAge": "soon" } ] }""", "Exports:0:MaxDirtyAge")]
    [InlineData("""{ "Exports": [ { "Path": "a", "ReadOnly": "maybe" } ] }""", "Exports:0:ReadOnly")]
    [InlineData("""{ "Exports": [ { "Path": "a", "Format": "vmdk" } ] }""", "Exports:0:Format")]
    [InlineData("""{ "Exports": [ { "Path": "a", "Create": "10X" } ] }""", "Exports:0:Create")]
    [InlineData("""{ "Exports": [ { "Name": "a" } ] }""", "Exports:0:Path")]
    [InlineData("""{ "Exports": [ { "Path": "a" }, { "Path": "x/a.qcow2" } ] }""", "Exports:1:Name")]
    [InlineData("""{ "Exports": [ { "Path": "a", "Chache": "none" } ] }""", "Exports:0:Chache")]
    [InlineData("""{ "Lissen": "127.0.0.1:1", "Exports": [ { "Path": "a" } ] }""", "Lissen")]
    [InlineData("""{ "DefaultExport": "zzz", "Exports": [ { "Path": "a" } ] }""", "DefaultExport")]
    [InlineData("""{ "MaxInFlight": "0", "Exports": [ { "Path": "a" } ] }""", "MaxInFlight")]
    [InlineData("""{ "Exports": [] }""", "Exports")]
    public void Invalid_config_file_values_are_refused_naming_the_key(string json, string key)
    {
        var config = WriteConfig(json);
        var error = Refused(() => ServerConfigurationLoader.Load(config, new ServeOverrides(), NoEnvironment, NbdQcow.Image.ImageFormats.Names));
        Assert.Contains(error.Problems, p => p.StartsWith(key + ":", StringComparison.Ordinal) && p.Contains("allowed"));
    }

    [Fact]
    public void Missing_or_malformed_config_file_is_refused_with_its_name()
    {
        var missing = Path.Combine(_dir.FullName, "missing.json");
        Assert.Contains("missing.json", Refused(() => ServerConfigurationLoader.Load(missing, new ServeOverrides(), NoEnvironment)).Message);
        var broken = WriteConfig("{ \"Exports\": [ ");
        Assert.Contains("not valid JSON", Refused(() => ServerConfigurationLoader.Load(broken, new ServeOverrides(), NoEnvironment)).Message);
    }

    [Fact]
    public void Snapshot_makes_the_export_read_only()
    {
        var settings = ServerConfigurationLoader.Load(null, new ServeOverrides { ImagePath = "a.qcow2", ["Snapshot"] = "before-upgrade" }, NoEnvironment);
        Assert.True(settings.Exports[0].ReadOnly);
        Assert.Equal("before-upgrade", settings.Exports[0].Snapshot);
    }

    [Theory]
    [InlineData("10G", 10L << 30)]
    [InlineData("512M", 512L << 20)]
    [InlineData("64k", 64L << 10)]
    [InlineData("1.5T", 3L << 39)]
    [InlineData("4096", 4096L)]
    [InlineData("2GiB", 2L << 30)]
    [InlineData("1P", 1L << 50)]
    [InlineData("3E", 3L << 60)]
    [InlineData("1GB", 1L << 30)]
    public void Sizes_parse_with_binary_units(string text, long expected)
    {
        Assert.True(SizeParser.TryParse(text, out var bytes));
        Assert.Equal(expected, bytes);
    }

    [Theory]
    [InlineData("")]
    [InlineData("G")]
    [InlineData("10X")]
    [InlineData("-1G")]
    [InlineData("0.3")]
    [InlineData("99999999E")]
    public void Bad_sizes_do_not_parse(string text) => Assert.False(SizeParser.TryParse(text, out _));

    [Theory]
    [InlineData("127.0.0.1:10809", "127.0.0.1", 10809)]
    [InlineData("[::1]:5", "::1", 5)]
    [InlineData("localhost:7", "127.0.0.1", 7)]
    [InlineData("0.0.0.0:0", "0.0.0.0", 0)]
    public void Listen_addresses_parse(string text, string address, int port)
    {
        Assert.True(EndPointParser.TryParse(text, out var endPoint));
        Assert.Equal(new IPEndPoint(IPAddress.Parse(address), port), endPoint);
    }

    [Theory]
    [InlineData("::1:5")]
    [InlineData("127.0.0.1")]
    [InlineData("127.0.0.1:70000")]
    [InlineData("example.org:10809")]
    public void Bad_listen_addresses_do_not_parse(string text) => Assert.False(EndPointParser.TryParse(text, out _));
}
