using System.Security.Cryptography;
using NbdQcow.Tests.Interop.Infrastructure;

namespace NbdQcow.Tests.Interop.Vm;

/// <summary>
/// Host-side checks of an image the guest wrote, after the server stopped: `qemu-img check` (qcow2), conversion
/// to raw with `qemu-img convert`, `e2fsck -fn`, and every file extracted with `debugfs rdump` compared with the
/// sha256 manifest the guest printed. Independent of the server: only qemu's and e2fsprogs' readers are used.
/// </summary>
public static class GuestImageCheck
{
    private static readonly TimeSpan ToolTimeout = TimeSpan.FromMinutes(2);

    public static async Task AssertHoldsManifestAsync(string imagePath, string format, GuestManifest manifest,
        string workDirectory)
    {
        Assert.True(manifest.HashByPath.Count > 0, "the guest printed no manifest");
        if (format == "qcow2")
        {
            (await ToolRunner.RunAsync("qemu-img", ["check", "-f", "qcow2", imagePath], ToolTimeout))
                .EnsureSuccess("qemu-img check of the image the guest wrote");
        }

        var raw = Path.Combine(workDirectory, "converted.raw");
        (await ToolRunner.RunAsync("qemu-img", ["convert", "-f", format, "-O", "raw", imagePath, raw], ToolTimeout))
            .EnsureSuccess("qemu-img convert to raw");
        (await ToolRunner.RunAsync("e2fsck", ["-fn", raw], ToolTimeout))
            .EnsureSuccess("e2fsck -fn of the converted image");

        var extracted = Path.Combine(workDirectory, "extracted");
        Directory.CreateDirectory(extracted);
        var dump = (await ToolRunner.RunAsync("debugfs", ["-R", $"rdump / {extracted}", raw], ToolTimeout))
            .EnsureSuccess("debugfs rdump");
        // debugfs exits 0 even when a request fails; its complaints name the request.
        Assert.DoesNotContain("rdump:", dump.Stderr, StringComparison.Ordinal);

        var found = Directory.EnumerateFiles(extracted, "*", SearchOption.AllDirectories)
            .Select(f => Path.GetRelativePath(extracted, f))
            .Where(f => !f.StartsWith("lost+found/", StringComparison.Ordinal))
            .Order(StringComparer.Ordinal)
            .ToList();
        var expected = manifest.HashByPath.Keys.Order(StringComparer.Ordinal).ToList();
        Assert.Equal(expected, found);

        var mismatches = new List<string>();
        foreach (var (path, hash) in manifest.HashByPath)
        {
            await using var file = File.OpenRead(Path.Combine(extracted, path));
            var actual = Convert.ToHexStringLower(await SHA256.HashDataAsync(file));
            if (actual != hash)
            {
                mismatches.Add($"{path}: image has {actual}, guest wrote {hash}");
            }
        }

        Assert.True(mismatches.Count == 0,
            $"{mismatches.Count} of {manifest.HashByPath.Count} files differ:\n{string.Join('\n', mismatches.Take(20))}");
    }
}
