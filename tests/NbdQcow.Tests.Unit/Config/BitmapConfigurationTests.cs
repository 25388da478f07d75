using NbdQcow.Config;

namespace NbdQcow.Tests.Unit.Config;

/// <summary>Bitmaps offered as qemu:dirty-bitmap:NAME: --bitmap (repeatable) or "Bitmaps" per export; each name once.</summary>
public sealed class BitmapConfigurationTests
{
    private static readonly KeyValuePair<string, string?>[] NoEnvironment = [];

    [Fact]
    public void Repeated_bitmap_options_and_the_config_key_give_the_export_its_bitmaps_in_order()
    {
        Assert.Empty(ServerConfigurationLoader.Load(null, new ServeOverrides { ImagePath = "a.qcow2" }, NoEnvironment).Exports[0].Bitmaps);
        var cli = ServerConfigurationLoader.Load(null, new ServeOverrides { ImagePath = "a.qcow2", Lists = { ["Bitmaps"] = ["daily", "weekly"] } }, NoEnvironment);
        Assert.Equal(["daily", "weekly"], cli.Exports[0].Bitmaps);
        var environment = ServerConfigurationLoader.Load(null, new ServeOverrides { ImagePath = "a.qcow2" },
            [new("NBDQCOW__EXPORTS__0__BITMAPS__0", "b0"), new("NBDQCOW__EXPORTS__0__BITMAPS__1", "b1")]);
        Assert.Equal(["b0", "b1"], environment.Exports[0].Bitmaps);

        var file = Path.Combine(Path.GetTempPath(), $"nbdqcow-bitmaps-{Guid.NewGuid():N}.json");
        File.WriteAllText(file, """{ "Exports": [ { "Path": "/images/a.qcow2", "Bitmaps": [ "since-full" ] } ] }""");
        try
        {
            Assert.Equal(["since-full"], ServerConfigurationLoader.Load(file, new ServeOverrides(), NoEnvironment).Exports[0].Bitmaps);
        }
        finally
        {
            File.Delete(file);
        }
    }

    [Fact]
    public void A_bitmap_named_twice_is_refused_naming_the_key()
    {
        var refusal = Assert.Throws<ConfigurationException>(() =>
            ServerConfigurationLoader.Load(null, new ServeOverrides { ImagePath = "a.qcow2", Lists = { ["Bitmaps"] = ["b0", "b0"] } }, NoEnvironment));
        Assert.Contains("Exports:0:Bitmaps: 'b0' is named twice", refusal.Message);
    }
}
