using System.Net.Sockets;
using System.Text.Json;
using NbdQcow.Tests.Interop.Infrastructure;

namespace NbdQcow.Tests.Interop.Cli;

/// <summary>What a user reads: usage errors, file errors, create and info in qemu-img's terms, the listening line.</summary>
public sealed class CliMessagesTests
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(60);

    private static async Task<ToolResult> RunAsync(params string[] arguments)
    {
        await ServerProcess.EnsureLauncherBuiltAsync();
        return await ToolRunner.RunAsync(RepositoryRoot.Launcher, arguments, Bound);
    }

    private static string[] Lines(string text) => text.Split('\n', StringSplitOptions.RemoveEmptyEntries);

    [Theory]
    [InlineData("serve", "serve --lisen 127.0.0.1:1 disk.img", "unrecognized option '--lisen' (did you mean '--listen'?)")]
    [InlineData("serve", "serve disk.img --listen", "--listen")]
    [InlineData("create", "create", "create")]
    [InlineData("check", "check disk.qcow2 --bogus", "unrecognized option '--bogus'")]
    [InlineData("info", "info", "info")]
    [InlineData("control", "control /nonexistent", "control")]
    public async Task UsageMistakesPrintTwoLinesAndExit2(string command, string arguments, string problem)
    {
        var result = await RunAsync(arguments.Split(' '));
        Assert.True(result.ExitCode == 2, result.Describe("exit code"));
        var lines = Lines(result.Stderr);
        Assert.True(lines.Length == 2, result.Describe("two lines on stderr"));
        Assert.StartsWith($"nbdqcow {command}: ", lines[0]);
        Assert.Contains(problem, lines[0]);
        Assert.DoesNotContain("127.0.0.1:1", lines[0]);
        Assert.StartsWith($"Try 'nbdqcow {command} --help'", lines[1]);
        Assert.Equal("", result.Stdout);
    }

    [Fact]
    public async Task FileErrorsReadLikeTheSystems()
    {
        using var folder = new TempDirectory("errors");
        var listen = $"127.0.0.1:{FreeTcpPort.Find()}";
        var missing = await RunAsync("serve", folder.File("sub/missing.img"), "--listen", listen);
        Assert.Equal(1, missing.ExitCode);
        Assert.Contains("missing.img: No such file or directory", missing.Stderr);
        var directory = await RunAsync("serve", folder.Path, "--listen", listen);
        Assert.Equal(1, directory.ExitCode);
        Assert.Contains($"{folder.Path}: Is a directory", directory.Stderr);
        var info = await RunAsync("info", folder.Path);
        Assert.Contains("Is a directory", info.Stderr);
        var check = await RunAsync("check", folder.File("none.qcow2"));
        Assert.Contains("none.qcow2: No such file or directory", check.Stderr);
        foreach (var result in new[] { missing, directory, info, check })
        {
            Assert.DoesNotContain("Could not find", result.Stderr);
            Assert.DoesNotContain("Access to the path", result.Stderr);
        }
    }

    [Fact]
    public async Task ControlSaysWhenNobodyListens()
    {
        using var folder = new TempDirectory("control");
        var missing = await RunAsync("control", folder.File("none.sock"), "status");
        Assert.Equal(1, missing.ExitCode);
        Assert.Contains("No such file or directory", missing.Stderr);
        // A socket file nobody accepts on (bound, not listening), as one left behind by a server that exited.
        var stale = folder.File("stale.sock");
        using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        socket.Bind(new UnixDomainSocketEndPoint(stale));
        var refused = await RunAsync("control", stale, "status");
        Assert.Equal(1, refused.ExitCode);
        Assert.Contains("nobody is listening", refused.Stderr);
    }

    [Fact]
    public async Task ConfigErrorsNameTheExportTheKeyAndWhereTheValueCameFrom()
    {
        using var folder = new TempDirectory("config-errors");
        var image = folder.File("disk.img");
        await File.WriteAllBytesAsync(image, new byte[1 << 20]);
        await ServerProcess.EnsureLauncherBuiltAsync();
        var fromEnvironment = await ToolRunner.RunAsync(RepositoryRoot.Launcher, ["serve", image], Bound,
            environment: new Dictionary<string, string> { ["NBDQCOW__LISTEN"] = "bogus" });
        Assert.Equal(2, fromEnvironment.ExitCode);
        Assert.Contains("from NBDQCOW__LISTEN", fromEnvironment.Stderr);
        var config = folder.File("bad-cache.json");
        await File.WriteAllTextAsync(config, $$"""{ "Exports": [ { "Name": "alpha", "Path": "{{image}}", "Cache": "fast" } ] }""");
        var fromFile = await RunAsync("serve", "--config", config);
        Assert.Equal(2, fromFile.ExitCode);
        Assert.Contains($"(export 'alpha', from config file {config})", fromFile.Stderr);
        var broken = folder.File("broken.json");
        await File.WriteAllTextAsync(broken, "{\n  \"Listen\": \"127.0.0.1:1\",,\n}");
        var syntax = await RunAsync("serve", "--config", broken);
        Assert.Equal(2, syntax.ExitCode);
        Assert.Contains("line 2, column", syntax.Stderr);
    }

    [Theory]
    [InlineData("plain.raw", new string[0], "raw")]
    [InlineData("plain.img", new[] { "--format", "qcow2" }, "qcow2")]
    [InlineData("disk.qcow2", new[] { "-f", "raw" }, "raw")]
    [InlineData("disk.qcow2", new string[0], "qcow2")]
    public async Task CreateFollowsTheExtensionOrFormatAsQemuImgSeesIt(string name, string[] extra, string expected)
    {
        using var folder = new TempDirectory("create");
        var image = folder.File(name);
        (await RunAsync(["create", image, "1G", .. extra])).EnsureSuccess("create");
        var info = (await ToolRunner.RunAsync("qemu-img", ["info", "--output=json", image])).EnsureSuccess("qemu-img info");
        using var json = JsonDocument.Parse(info.Stdout);
        Assert.Equal(expected, json.RootElement.GetProperty("format").GetString());
        Assert.Equal(1L << 30, json.RootElement.GetProperty("virtual-size").GetInt64());
    }

    [Fact]
    public async Task CreateWithBackingPrintsTheRealSizeAndInfoSpeaksQemuImgJson()
    {
        using var folder = new TempDirectory("create");
        (await ToolRunner.RunAsync("qemu-img", ["create", "-q", "-f", "qcow2", folder.File("base.qcow2"), "48M"])).EnsureSuccess();
        var overlay = folder.File("overlay.qcow2");
        var created = (await RunAsync("create", overlay, "--backing", "base.qcow2")).EnsureSuccess("create --backing");
        Assert.Contains($"{48L << 20} bytes", created.Stdout);
        var ours = (await RunAsync("info", "--output=json", overlay)).EnsureSuccess("info --output=json");
        var qemus = (await ToolRunner.RunAsync("qemu-img", ["info", "--output=json", overlay])).EnsureSuccess();
        using var ourJson = JsonDocument.Parse(ours.Stdout);
        using var qemuJson = JsonDocument.Parse(qemus.Stdout);
        foreach (var field in new[] { "virtual-size", "cluster-size", "dirty-flag" })
        {
            Assert.Equal(qemuJson.RootElement.GetProperty(field).ToString(), ourJson.RootElement.GetProperty(field).ToString());
        }
        Assert.Equal(qemuJson.RootElement.GetProperty("backing-filename").GetString(), ourJson.RootElement.GetProperty("backing-filename").GetString());
    }

    [Fact]
    public async Task ListeningLineNamesTheCacheModeAndHowToStop()
    {
        using var folder = new TempDirectory("line");
        var image = folder.File("disk.img");
        await File.WriteAllBytesAsync(image, new byte[1 << 20]);
        await using var server = await ServerProcess.StartAsync(new ServeOptions { ImagePath = image, CacheMode = "writethrough" });
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (!server.Output.Contains("listening on") && clock.Elapsed < Bound) await Task.Delay(50);
        Assert.Contains("; cache writethrough; stop with Ctrl-C or SIGTERM", server.Output);
        await server.StopAndAssertCleanExitAsync();
    }
}
