namespace NbdQcow.Tests.Interop.Infrastructure;

/// <summary>
/// A size-limited tmpfs mounted on a fresh folder (`mount -t tmpfs -o size=N`; tests run as root), so writes hit a
/// real ENOSPC. A ballast file takes space that <see cref="FreeBallast"/> gives back. Unmounted on dispose.
/// </summary>
public sealed class SmallTmpfs : IDisposable
{
    private readonly TempDirectory _mountPoint = new("tmpfs");

    private SmallTmpfs()
    {
    }

    public string Path => _mountPoint.Path;

    public string File(string name) => _mountPoint.File(name);

    private string Ballast => File("ballast");

    public static async Task<SmallTmpfs> MountAsync(int megabytes)
    {
        var tmpfs = new SmallTmpfs();
        var result = await ToolRunner.RunAsync("mount", ["-t", "tmpfs", "-o", $"size={megabytes}m", "tmpfs", tmpfs.Path], TimeSpan.FromSeconds(20));
        if (result.ExitCode != 0)
        {
            tmpfs._mountPoint.Dispose();
            Assert.Fail($"mounting a {megabytes} MiB tmpfs failed (these tests need root): {result.Stderr}");
        }
        return tmpfs;
    }

    /// <summary>Fills the file system with a ballast file until only about <paramref name="freeMegabytes"/> MiB stay free.</summary>
    public void FillLeaving(int freeMegabytes)
    {
        var info = new DriveInfo(Path);
        var ballast = info.AvailableFreeSpace - ((long)freeMegabytes << 20);
        if (ballast <= 0) return;
        using var stream = new FileStream(Ballast, FileMode.Create, FileAccess.Write);
        var chunk = new byte[1 << 20];
        Array.Fill(chunk, (byte)0xba);
        for (long done = 0; done < ballast; done += chunk.Length)
        {
            stream.Write(chunk, 0, (int)Math.Min(chunk.Length, ballast - done));
        }
    }

    public long FreeBytes => new DriveInfo(Path).AvailableFreeSpace;

    /// <summary>Deletes the ballast: the space comes back at once.</summary>
    public void FreeBallast() => System.IO.File.Delete(Ballast);

    public void Dispose()
    {
        var result = ToolRunner.RunAsync("umount", [Path], TimeSpan.FromSeconds(20)).GetAwaiter().GetResult();
        if (result.ExitCode != 0)
        {
            // Still busy (a process not yet gone): detach it now, the kernel frees it when the last user leaves.
            ToolRunner.RunAsync("umount", ["-l", Path], TimeSpan.FromSeconds(20)).GetAwaiter().GetResult();
        }
        _mountPoint.Dispose();
    }
}
