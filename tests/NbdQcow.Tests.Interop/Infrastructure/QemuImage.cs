namespace NbdQcow.Tests.Interop.Infrastructure;

/// <summary>Builds and inspects images with qemu's own tools (qemu-img, qemu-io): the reference implementation.</summary>
public static class QemuImage
{
    /// <summary>`qemu-img create -f qcow2 [-o OPTIONS] [-b BACKING -F FMT] PATH SIZE`, run in the image's folder.</summary>
    public static async Task CreateQcow2Async(string path, string size, string? options = null,
        string? backing = null, string? backingFormat = null)
    {
        var arguments = new List<string> { "create", "-q", "-f", "qcow2" };
        if (options is not null)
        {
            arguments.AddRange(["-o", options]);
        }

        if (backing is not null)
        {
            arguments.AddRange(["-b", backing, "-F", backingFormat ?? "qcow2"]);
        }

        arguments.AddRange([path, size]);
        (await ToolRunner.RunAsync("qemu-img", arguments, workingDirectory: Path.GetDirectoryName(path)))
            .EnsureSuccess();
    }

    /// <summary>Runs qemu-io commands (e.g. "write -P 0x11 0 64k") on a file of the given format.</summary>
    public static async Task IoAsync(string path, string format, params string[] commands)
    {
        var arguments = new List<string> { "-f", format };
        foreach (var command in commands)
        {
            arguments.AddRange(["-c", command]);
        }

        arguments.Add(path);
        var result = (await ToolRunner.RunAsync("qemu-io", arguments, workingDirectory: Path.GetDirectoryName(path)))
            .EnsureSuccess();
        Assert.DoesNotContain("failed", result.Stdout + result.Stderr, StringComparison.OrdinalIgnoreCase);
    }

    /// <summary>qemu's own read of an image (optionally of an internal snapshot) into a raw file.</summary>
    public static async Task ConvertToRawAsync(string source, string format, string target, string? snapshot = null)
    {
        var arguments = new List<string> { "convert", "-f", format };
        if (snapshot is not null)
        {
            arguments.AddRange(["-l", $"snapshot.name={snapshot}"]);
        }

        arguments.AddRange(["-O", "raw", source, target]);
        (await ToolRunner.RunAsync("qemu-img", arguments, TimeSpan.FromSeconds(300))).EnsureSuccess();
    }

    /// <summary>`qemu-img compare` that must report identical contents.</summary>
    public static async Task AssertIdenticalAsync(string first, string firstFormat, string second,
        string secondFormat, string? context = null)
    {
        var result = await ToolRunner.RunAsync("qemu-img",
            ["compare", "-f", firstFormat, "-F", secondFormat, first, second], TimeSpan.FromSeconds(300));
        result.EnsureSuccess(context);
        Assert.Contains("Images are identical", result.Stdout);
    }

    /// <summary>
    /// `qemu-img check`: fails unless it finds no errors and no leaked clusters (exit 0 and no leak report).
    /// </summary>
    public static async Task AssertCheckCleanAsync(string path, string? context = null)
    {
        var result = await ToolRunner.RunAsync("qemu-img", ["check", "-f", "qcow2", path], TimeSpan.FromSeconds(300));
        result.EnsureSuccess(context);
        Assert.True(result.Stdout.Contains("No errors were found", StringComparison.Ordinal) &&
                    !result.Stdout.Contains("leaked", StringComparison.Ordinal),
            result.Describe("qemu-img check reported problems") + (context is null ? "" : "\n" + context));
    }

    /// <summary>SHA-256 of a file's bytes, to prove a backing file was not modified.</summary>
    public static string Sha256(string path)
    {
        using var file = File.OpenRead(path);
        return Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(file));
    }
}
