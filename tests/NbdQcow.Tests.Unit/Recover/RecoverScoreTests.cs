using System.Diagnostics;
using NbdQcow.Tests.Unit.HostIo;

namespace NbdQcow.Tests.Unit.Recover;

/// <summary>
/// The CI slice of scripts/recover-score.py: tagged 4 KiB blocks written with qemu-io into real images, damaged as
/// host crashes damage them, recovered by the real CLI, and scored block by block. The script fails when any block
/// reads another offset's (or an older generation's) data, when the source changes, or when an output fails
/// `qemu-img check`. The full matrix is the script's default run (its numbers are in the README).
/// </summary>
public sealed class RecoverScoreTests
{
    [Theory]
    [InlineData("v3-64k", "misdirected-l2-sector,zero-refcount,lost-l1-entry")]
    [InlineData("compressed-64k", "lost-l2-entries,misdirected-l2-sector")]
    [InlineData("deleted-snapshot-64k", "zero-l1,truncate")]
    public async Task Recovered_blocks_are_never_wrong(string layout, string damage)
    {
        using var folder = new TempDirectory("unit", diskBacked: true);
        string root = new DirectoryInfo(AppContext.BaseDirectory).Parent!.FullName;
        while (!File.Exists(Path.Combine(root, "NbdQcow.sln"))) root = Path.GetDirectoryName(root) ?? throw new DirectoryNotFoundException("NbdQcow.sln");
        var psi = new ProcessStartInfo("/usr/bin/python3") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in new[] { Path.Combine(root, "scripts", "recover-score.py"), "--layouts", layout, "--damage", damage,
                     "--nbdqcow", $"dotnet {Path.Combine(AppContext.BaseDirectory, "nbdqcow.dll")}", "--keep", folder.Path })
            psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        try
        {
            await p.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException("recover-score.py did not finish in 2 minutes");
        }
        string output = await stdout + await stderr;
        Assert.True(p.ExitCode == 0, output);
        Assert.Contains("WRONG 0", output);
        Assert.DoesNotContain("(refused", output);
    }
}
