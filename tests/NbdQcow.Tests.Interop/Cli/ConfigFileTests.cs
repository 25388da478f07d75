using System.Text.Json;
using NbdQcow.Tests.Interop.Infrastructure;

namespace NbdQcow.Tests.Interop.Cli;

/// <summary>`nbdqcow serve --config FILE`: exports declared in JSON, NBDQCOW__* and command-line overrides, refusals.</summary>
public sealed class ConfigFileTests
{
    private const long Mib = 1 << 20;
    private static readonly TimeSpan RefusalBound = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task TwoExportsFromOneConfigFileServeEachImageUnderItsName()
    {
        using var folder = new TempDirectory("cfg");
        var config = WriteTwoExportConfig(folder);
        await using var server = await ServerProcess.StartAsync(new ServeOptions { ConfigFile = config });
        var exports = await ListExportsAsync(server);
        Assert.Equal(32 * Mib, exports["alpha"].GetProperty("export-size").GetInt64());
        Assert.Equal(16 * Mib, exports["beta"].GetProperty("export-size").GetInt64());
        Assert.False(exports["alpha"].GetProperty("is_read_only").GetBoolean());
        Assert.True(exports["beta"].GetProperty("is_read_only").GetBoolean());
        Assert.Equal("the second disk", exports["beta"].GetProperty("description").GetString());

        await QemuIoAsync(server, "alpha", "read -P 0xa1 1M 1M", "write -P 0xa2 3M 64k");
        await QemuIoAsync(server, "beta", "-r", "read -P 0xb1 0 2M");
        (await ToolRunner.RunPythonScriptAsync("libnbd_checks.py", ["read-only", server.Uri("beta")]))
            .EnsureSuccess(server.Describe());
        await server.StopAndAssertCleanExitAsync();
        AssertFilled(folder.File("alpha.img"), 3 * Mib, 64 * 1024, 0xa2);
        AssertFilled(folder.File("beta.img"), 0, 512, 0xb1);
    }

    [Fact]
    public async Task EnvironmentVariableOverridesAnExportOfTheConfigFile()
    {
        using var folder = new TempDirectory("cfg");
        var config = WriteTwoExportConfig(folder);
        await using var server = await ServerProcess.StartAsync(new ServeOptions
        {
            ConfigFile = config,
            Environment = new Dictionary<string, string> { ["NBDQCOW__EXPORTS__0__READONLY"] = "true" },
        });
        var exports = await ListExportsAsync(server);
        Assert.True(exports["alpha"].GetProperty("is_read_only").GetBoolean(), "NBDQCOW__EXPORTS__0__READONLY ignored");
        await server.StopAndAssertCleanExitAsync();
    }

    [Fact]
    public async Task CommandLineReadOnlyOverridesEveryConfiguredExport()
    {
        using var folder = new TempDirectory("cfg");
        var config = WriteTwoExportConfig(folder);
        await using var server = await ServerProcess.StartAsync(new ServeOptions { ConfigFile = config, ReadOnly = true });
        var exports = await ListExportsAsync(server);
        Assert.All(exports.Values, e => Assert.True(e.GetProperty("is_read_only").GetBoolean()));
        await server.StopAndAssertCleanExitAsync();
    }

    [Fact]
    public async Task InvalidCacheModeIsRefusedNamingTheKeyAndTheAllowedModes()
    {
        var stderr = await ExpectRefusalAsync("""{ "Exports": [ { "Name": "a", "Path": "IMAGE", "Cache": "fast" } ] }""");
        Assert.Contains("Cache", stderr);
        Assert.Contains("fast", stderr);
        foreach (var mode in new[] { "writeback", "writethrough", "none", "directsync", "unsafe" })
        {
            Assert.Contains(mode, stderr);
        }
    }

    [Fact]
    public async Task InvalidMaxDirtyAgeIsRefusedNamingTheKey()
    {
        var stderr = await ExpectRefusalAsync("""{ "Exports": [ { "Path": "IMAGE", "MaxDirtyAge": "soon" } ] }""");
        Assert.Contains("MaxDirtyAge", stderr);
        Assert.Contains("soon", stderr);
    }

    [Fact]
    public async Task MisspeltKeyIsRefusedNamingIt()
    {
        var stderr = await ExpectRefusalAsync("""{ "Exports": [ { "Path": "IMAGE", "Cahce": "none" } ] }""");
        Assert.Contains("Cahce", stderr);
    }

    [Fact]
    public async Task InvalidReadOnlyValueFromTheEnvironmentIsRefusedNamingTheKey()
    {
        var stderr = await ExpectRefusalAsync("""{ "Exports": [ { "Path": "IMAGE" } ] }""",
            new Dictionary<string, string> { ["NBDQCOW__EXPORTS__0__READONLY"] = "perhaps" });
        Assert.Contains("ReadOnly", stderr);
        Assert.Contains("perhaps", stderr);
    }

    [Fact]
    public async Task MalformedJsonIsRefusedNamingTheFile()
    {
        var stderr = await ExpectRefusalAsync("""{ "Exports": [ { "Path": "IMAGE" } """);
        Assert.Contains("config.json", stderr);
    }

    /// <summary>alpha.img (32 MiB, 0xa1 at 1 MiB) writable, beta.img (16 MiB, 0xb1 at 0) read-only with a description.</summary>
    private static string WriteTwoExportConfig(TempDirectory folder)
    {
        var alpha = folder.File("alpha.img");
        var beta = folder.File("beta.img");
        RawImageFile.CreateSparse(alpha, 32 * Mib);
        RawImageFile.CreateSparse(beta, 16 * Mib);
        RawImageFile.Write(alpha, Mib, Filled(Mib, 0xa1));
        RawImageFile.Write(beta, 0, Filled(2 * Mib, 0xb1));
        var config = folder.File("config.json");
        File.WriteAllText(config, JsonSerializer.Serialize(new
        {
            Exports = new object[]
            {
                new { Name = "alpha", Path = alpha },
                new { Name = "beta", Path = beta, ReadOnly = true, Description = "the second disk" },
            },
        }));
        return config;
    }

    /// <summary>Runs serve with the config (IMAGE replaced by a real file) and expects a prompt non-zero exit.</summary>
    private static async Task<string> ExpectRefusalAsync(string json, IReadOnlyDictionary<string, string>? environment = null)
    {
        await ServerProcess.EnsureLauncherBuiltAsync();
        using var folder = new TempDirectory("cfg");
        var image = folder.File("disk.img");
        RawImageFile.CreateSparse(image, Mib);
        var config = folder.File("config.json");
        File.WriteAllText(config, json.Replace("IMAGE", image));
        var result = await ToolRunner.RunAsync(RepositoryRoot.Launcher,
            ["serve", "--config", config, "--listen", $"127.0.0.1:{FreeTcpPort.Find()}"], RefusalBound,
            environment: environment);
        result.EnsureFailure("the server must refuse this configuration at start");
        return result.Stderr + result.Stdout;
    }

    private static async Task<Dictionary<string, JsonElement>> ListExportsAsync(ServerProcess server)
    {
        var result = (await ToolRunner.RunAsync("nbdinfo", ["--list", "--json", server.Uri()])).EnsureSuccess(server.Describe());
        using var json = JsonDocument.Parse(result.Stdout);
        return json.RootElement.GetProperty("exports").EnumerateArray()
            .ToDictionary(e => e.GetProperty("export-name").GetString()!, e => e.Clone());
    }

    /// <summary>qemu-io commands on an export; a leading "-r" opens it read-only.</summary>
    private static async Task QemuIoAsync(ServerProcess server, string export, params string[] commands)
    {
        var arguments = new List<string> { "-f", "raw" };
        foreach (var command in commands)
        {
            arguments.AddRange(command == "-r" ? ["-r"] : ["-c", command]);
        }

        arguments.Add(server.Uri(export));
        var result = (await ToolRunner.RunAsync("qemu-io", arguments)).EnsureSuccess(server.Describe());
        Assert.DoesNotContain("failed", result.Stdout, StringComparison.OrdinalIgnoreCase);
    }

    private static byte[] Filled(long length, byte value)
    {
        var data = new byte[length];
        data.AsSpan().Fill(value);
        return data;
    }

    private static void AssertFilled(string path, long offset, int length, byte value) =>
        TestPattern.AssertEqual(Filled(length, value), RawImageFile.Read(path, offset, length), offset, path);
}
