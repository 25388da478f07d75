using System.Text.Json;
using NbdQcow.Tests.Interop.Infrastructure;

namespace NbdQcow.Tests.Interop.Migration;

/// <summary>
/// Inactive/active handover through the control socket, with two real servers on one image (shared storage): the
/// destination starts inactive, is refused activation while the source holds the write lock, activates once the
/// source inactivated, serves what the source wrote, and the image can be handed back (the source re-reads metadata).
/// </summary>
public sealed class HandoffTests
{
    private const long Mib = 1 << 20;

    [Theory]
    [InlineData("qcow2")]
    [InlineData("raw")]
    public async Task Destination_activates_only_after_the_source_inactivated_and_serves_its_writes_and_hands_them_back(string format)
    {
        using var folder = new TempDirectory("handoff");
        var image = folder.File(format == "qcow2" ? "disk.qcow2" : "disk.img");
        if (format == "qcow2")
        {
            await QemuImage.CreateQcow2Async(image, "64M");
        }
        else
        {
            RawImageFile.CreateSparse(image, 64 * Mib);
        }
        var sourceControl = folder.File("source.ctl");
        var destinationControl = folder.File("destination.ctl");
        await using var source = await ServerProcess.StartAsync(new ServeOptions
        {
            ImagePath = image,
            UnixSocket = true,
            ExtraArguments = ["--control", sourceControl],
        });
        await using var destination = await ServerProcess.StartAsync(new ServeOptions
        {
            ImagePath = image,
            UnixSocket = true,
            ExtraArguments = ["--inactive", "--control", destinationControl],
        });
        string Context() => source.Describe() + "\n" + destination.Describe();

        // Inactive: the export negotiates with its final size and flags, but refuses I/O.
        var info = (await ToolRunner.RunAsync("nbdinfo", ["--json", destination.Uri()])).EnsureSuccess(Context());
        using (var json = JsonDocument.Parse(info.Stdout))
        {
            var export = json.RootElement.GetProperty("exports")[0];
            Assert.Equal(64 * Mib, export.GetProperty("export-size").GetInt64());
            Assert.False(export.GetProperty("is_read_only").GetBoolean());
        }
        (await Io(destination, "read 0 4k")).EnsureFailure(Context());
        Assert.Equal("inactive", State(await Control(destinationControl, "status")));

        (await Io(source, "write -P 0x6b 1M 1M", "write -P 0x6a 30M 64k")).EnsureSuccess(Context());

        // Activating while the source still holds the image is refused by qemu's lock rules, and changes nothing.
        var early = await Control(destinationControl, "activate");
        Assert.Equal(1, early.ExitCode);
        Assert.Contains("Failed to get \"write\" lock", Error(early));
        Assert.Equal("inactive", State(await Control(destinationControl, "status")));

        var handedOver = (await Control(sourceControl, "inactivate")).EnsureSuccess(Context());
        Assert.Equal("inactive", State(handedOver));
        (await Io(source, "read 0 4k")).EnsureFailure(Context());
        if (format == "qcow2")
        {
            // Both inactive: no write lock anywhere, and the source left the image flushed and clean.
            await QemuImage.AssertCheckCleanAsync(image, Context());
        }

        Assert.Equal("active", State((await Control(destinationControl, "activate")).EnsureSuccess(Context())));
        (await Io(destination, "read -P 0x6b 1M 1M", "read -P 0x6a 30M 64k", "read -P 0 0 1M", "write -P 0x6c 8M 1M"))
            .EnsureSuccess(Context());

        // The other order: the source cannot take the image back while the destination writes it.
        var back = await Control(sourceControl, "activate");
        Assert.Equal(1, back.ExitCode);
        Assert.Contains("Failed to get \"write\" lock", Error(back));

        // Handing back: the source reopens the image and sees the cluster the destination allocated.
        (await Control(destinationControl, "inactivate")).EnsureSuccess(Context());
        (await Control(sourceControl, "activate")).EnsureSuccess(Context());
        (await Io(source, "read -P 0x6c 8M 1M", "read -P 0x6b 1M 1M")).EnsureSuccess(Context());

        await destination.StopAndAssertCleanExitAsync();
        await source.StopAndAssertCleanExitAsync();
        if (format == "qcow2")
        {
            await QemuImage.AssertCheckCleanAsync(image);
        }
        (await ToolRunner.RunAsync("qemu-io", ["-r", "-f", format, "-c", "read -P 0x6c 8M 1M", "-c", "read -P 0x6a 30M 64k", image]))
            .EnsureSuccess();
    }

    [Fact]
    public async Task Control_socket_answers_bad_requests_with_an_error_and_inactive_needs_a_control_socket()
    {
        await ServerProcess.EnsureLauncherBuiltAsync();
        using var folder = new TempDirectory("handoff");
        var image = folder.File("disk.img");
        RawImageFile.CreateSparse(image, 16 * Mib);
        var refused = await ToolRunner.RunAsync(RepositoryRoot.Launcher, ["serve", image, "--inactive", "--socket", folder.File("n.sock")]);
        Assert.Equal(2, refused.ExitCode);
        Assert.Contains("Inactive: true needs a control socket", refused.Stderr);

        var control = folder.File("c.ctl");
        await using var server = await ServerProcess.StartAsync(new ServeOptions
        {
            ImagePath = image,
            UnixSocket = true,
            ExtraArguments = ["--control", control],
        });
        var unknownExport = await ToolRunner.RunAsync(RepositoryRoot.Launcher, ["control", control, "inactivate", "--export", "nope"]);
        Assert.Equal(1, unknownExport.ExitCode);
        Assert.Contains("no export 'nope'", Error(unknownExport));
        var again = (await Control(control, "activate")).EnsureSuccess(server.Describe());
        Assert.Contains("already active", again.Stdout);
        Assert.Equal("active", State(again));
        await server.StopAndAssertCleanExitAsync();
        Assert.False(File.Exists(control), "the control socket is removed at exit");
    }

    [Fact]
    public async Task Activate_refuses_an_image_file_replaced_while_inactive_and_takes_back_the_same_file()
    {
        await ServerProcess.EnsureLauncherBuiltAsync();
        using var folder = new TempDirectory("handoff");
        var image = folder.File("disk.img");
        await File.WriteAllBytesAsync(image, Enumerable.Repeat((byte)0x11, (int)(16 * Mib)).ToArray());
        var kept = folder.File("kept.img");
        var control = folder.File("c.ctl");
        await using var server = await ServerProcess.StartAsync(new ServeOptions
        {
            ImagePath = image,
            UnixSocket = true,
            ExtraArguments = ["--control", control],
        });
        (await Control(control, "inactivate")).EnsureSuccess(server.Describe());
        // Another disk of the same size renamed over the path while the image is handed over.
        var other = folder.File("other.img");
        await File.WriteAllBytesAsync(other, Enumerable.Repeat((byte)0x22, (int)(16 * Mib)).ToArray());
        Assert.Equal(0, link(image, kept));
        File.Move(other, image, overwrite: true);
        var refused = await Control(control, "activate");
        Assert.Equal(1, refused.ExitCode);
        Assert.Contains("replaced", Error(refused));
        Assert.Equal("inactive", State(await Control(control, "status")));
        // The file it served, back at its path: taken back.
        File.Move(kept, image, overwrite: true);
        Assert.Equal("active", State((await Control(control, "activate")).EnsureSuccess(server.Describe())));
        (await ToolRunner.RunAsync("qemu-io", ["-r", "-f", "raw", "-c", "read -P 0x11 0 64k", server.Uri()])).EnsureSuccess(server.Describe());
        await server.StopAndAssertCleanExitAsync();
    }

    [Fact]
    public async Task A_second_server_given_a_live_control_socket_is_refused_instead_of_taking_the_first_ones_commands()
    {
        await ServerProcess.EnsureLauncherBuiltAsync();
        using var folder = new TempDirectory("handoff");
        var first = folder.File("first.img");
        var second = folder.File("second.img");
        RawImageFile.CreateSparse(first, 16 * Mib);
        RawImageFile.CreateSparse(second, 16 * Mib);
        var control = folder.File("c.ctl");
        await using var server = await ServerProcess.StartAsync(new ServeOptions
        {
            ImagePath = first,
            UnixSocket = true,
            ExtraArguments = ["--control", control],
        });
        // Replacing the live socket would send every later "inactivate" meant for the first server to the second.
        var stealing = await ToolRunner.RunAsync(RepositoryRoot.Launcher,
            ["serve", second, "--listen", "off", "--socket", folder.File("second.sock"), "--control", control], TimeSpan.FromSeconds(30));
        Assert.Equal(1, stealing.ExitCode);
        Assert.Contains("already in use", stealing.Stderr);
        var status = (await Control(control, "status")).EnsureSuccess(server.Describe());
        using (var json = JsonDocument.Parse(status.Stdout))
            Assert.Equal(first, json.RootElement.GetProperty("exports")[0].GetProperty("path").GetString());
        // The same path as the server's own NBD socket is refused the same way.
        var own = await ToolRunner.RunAsync(RepositoryRoot.Launcher,
            ["serve", second, "--listen", "off", "--socket", folder.File("own.sock"), "--control", folder.File("own.sock")], TimeSpan.FromSeconds(30));
        Assert.Equal(1, own.ExitCode);
        Assert.Contains("already in use", own.Stderr);
        await server.StopAndAssertCleanExitAsync();
    }

    [System.Runtime.InteropServices.DllImport("libc", SetLastError = true)]
    private static extern int link(string existing, string created);

    private static Task<ToolResult> Control(string socket, string command) =>
        ToolRunner.RunAsync(RepositoryRoot.Launcher, ["control", socket, command]);

    private static string State(ToolResult reply)
    {
        using var json = JsonDocument.Parse(reply.Stdout);
        return json.RootElement.GetProperty("exports")[0].GetProperty("state").GetString()!;
    }

    private static string Error(ToolResult reply)
    {
        using var json = JsonDocument.Parse(reply.Stdout);
        return json.RootElement.GetProperty("error").GetString()!;
    }

    private static Task<ToolResult> Io(ServerProcess server, params string[] commands)
    {
        var arguments = new List<string> { "-f", "raw" };
        foreach (var command in commands)
        {
            arguments.AddRange(["-c", command]);
        }
        arguments.Add(server.Uri());
        return ToolRunner.RunAsync("qemu-io", arguments);
    }
}
