using NbdQcow.Cache;
using NbdQcow.Config;
using NbdQcow.HostIo;

namespace NbdQcow.Tests.Unit.Config;

public sealed class AioConfigurationTests : IDisposable
{
    private static readonly KeyValuePair<string, string?>[] NoEnvironment = [];

    private readonly DirectoryInfo _dir = Directory.CreateTempSubdirectory("nbdqcow-config-test-");

    public void Dispose() => _dir.Delete(recursive: true);

    [Theory]
    [InlineData("writeback", AioEngine.Threads)]
    [InlineData("none", AioEngine.IoUring)]
    [InlineData("writethrough", AioEngine.Threads)]
    [InlineData("directsync", AioEngine.IoUring)]
    [InlineData("unsafe", AioEngine.Threads)]
    public void Without_aio_every_cache_mode_uses_its_default_engine(string cache, AioEngine expected)
    {
        var export = ServerConfigurationLoader.Load(null, new ServeOverrides { ImagePath = "a.qcow2", ["Cache"] = cache }, NoEnvironment).Exports[0];
        Assert.True(CacheModeInfo.TryParse(cache, out var mode));
        Assert.Null(export.Aio);
        Assert.Equal(mode.DefaultAio(), export.EffectiveAio);
        Assert.Equal(expected, export.EffectiveAio);
    }

    [Fact]
    public void Aio_comes_from_the_command_line_the_environment_and_the_config_file()
    {
        var fromCli = ServerConfigurationLoader.Load(null, new ServeOverrides { ImagePath = "a.qcow2", ["Aio"] = "io_uring" }, NoEnvironment);
        Assert.Equal(AioEngine.IoUring, fromCli.Exports[0].Aio);

        var fromEnvironment = ServerConfigurationLoader.Load(null, new ServeOverrides { ImagePath = "a.qcow2" },
            [new("NBDQCOW__EXPORTS__0__AIO", "IO_URING")]);
        Assert.Equal(AioEngine.IoUring, fromEnvironment.Exports[0].Aio);

        var path = Path.Combine(_dir.FullName, "config.json");
        File.WriteAllText(path, """
            { "Exports": [
              { "Name": "a", "Path": "/images/a.qcow2", "Aio": "io_uring", "Cache": "none" },
              { "Name": "b", "Path": "/images/b.raw", "Aio": "threads" } ] }
            """);
        var exports = ServerConfigurationLoader.Load(path, new ServeOverrides(), NoEnvironment).Exports;
        Assert.Equal((AioEngine.IoUring, AioEngine.Threads), (exports[0].Aio, exports[1].Aio));
    }

    [Theory]
    [InlineData("native")]
    [InlineData("iouring")]
    public void A_bad_aio_value_is_refused_naming_the_key_and_the_engines(string text)
    {
        var refusal = Assert.Throws<ConfigurationException>(() =>
            ServerConfigurationLoader.Load(null, new ServeOverrides { ImagePath = "a.qcow2", ["Aio"] = text }, NoEnvironment));
        Assert.Contains($"Aio: '{text}' is not an I/O engine; allowed: threads, io_uring", refusal.Message);
    }
}
