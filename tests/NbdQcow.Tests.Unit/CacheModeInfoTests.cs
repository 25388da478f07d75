using NbdQcow.Cache;

namespace NbdQcow.Tests.Unit;

public class CacheModeInfoTests
{
    [Theory]
    [InlineData("writeback", CacheMode.Writeback)]
    [InlineData("writethrough", CacheMode.Writethrough)]
    [InlineData("none", CacheMode.None)]
    [InlineData("directsync", CacheMode.DirectSync)]
    [InlineData("unsafe", CacheMode.Unsafe)]
    public void Cli_names_round_trip(string name, CacheMode mode)
    {
        Assert.True(CacheModeInfo.TryParse(name, out var parsed));
        Assert.Equal(mode, parsed);
        Assert.Equal(name, parsed.ToCliName());
    }

    [Fact]
    public void Unknown_name_is_refused() => Assert.False(CacheModeInfo.TryParse("fast", out _));

    [Fact]
    public void Only_none_and_directsync_bypass_the_page_cache()
    {
        Assert.True(CacheMode.None.UsesODirect());
        Assert.True(CacheMode.DirectSync.UsesODirect());
        Assert.False(CacheMode.Writeback.UsesODirect());
    }
}
