using NbdQcow.Tests.Interop.Infrastructure;

namespace NbdQcow.Tests.Interop.Vm;

/// <summary>
/// The VM test's guest (kernel + initramfs), built by tests/vm/build-guest.sh into .cache/vm at the repository
/// root. The script downloads the kernel package once and rebuilds the initramfs only when an input changed, so
/// after the first run this costs about a second. Built once per test run.
/// </summary>
public static class GuestBuild
{
    private static readonly TimeSpan BuildTimeout = TimeSpan.FromMinutes(10);
    private static readonly SemaphoreSlim BuildOnce = new(1, 1);
    private static string? directory;

    /// <summary>The folder of the guest files and scripts: tests/vm in the repository.</summary>
    public static string ScriptsFolder => Path.Combine(RepositoryRoot.Path, "tests", "vm");

    /// <summary>Builds (or reuses) the guest and returns the folder holding kernel/vmlinuz and initramfs.cpio.gz.</summary>
    public static async Task<string> EnsureBuiltAsync()
    {
        await BuildOnce.WaitAsync();
        try
        {
            if (directory is null)
            {
                var result = await ToolRunner.RunAsync("bash", [Path.Combine(ScriptsFolder, "build-guest.sh")],
                    BuildTimeout);
                result.EnsureSuccess("building the VM test guest");
                var built = result.Stdout.Trim().Split('\n')[^1].Trim();
                Assert.True(File.Exists(Path.Combine(built, "kernel", "vmlinuz")) &&
                            File.Exists(Path.Combine(built, "initramfs.cpio.gz")),
                    $"build-guest.sh printed {built}, which lacks kernel/vmlinuz or initramfs.cpio.gz");
                directory = built;
            }

            return directory;
        }
        finally
        {
            BuildOnce.Release();
        }
    }
}
