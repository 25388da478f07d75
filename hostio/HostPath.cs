using System.Text;
using NbdQcow.HostIo.Native;

namespace NbdQcow.HostIo;

/// <summary>What the BCL does not say about a host path: its canonical form and whether it names a regular file.</summary>
public static class HostPath
{
    /// <summary>The absolute path with every symlink and "."/".." resolved (realpath(3)), or null when it does not exist.</summary>
    public static string? Canonical(string path)
    {
        var buffer = new byte[LinuxFileCalls.PATH_MAX];
        if (LinuxFileCalls.RealPath(path, buffer) == 0) return null;
        int length = Array.IndexOf(buffer, (byte)0);
        return Encoding.UTF8.GetString(buffer, 0, length < 0 ? buffer.Length : length);
    }

    /// <summary>True when <paramref name="path"/>, after symlinks, is a regular file (not a device, FIFO, socket or folder).</summary>
    public static bool IsRegularFile(string path)
    {
        if (LinuxFileCalls.StatX(LinuxFileCalls.AT_FDCWD, path, 0, LinuxFileCalls.STATX_TYPE, out var status) != 0) return false;
        return (status.Mode & LinuxFileCalls.S_IFMT) == LinuxFileCalls.S_IFREG;
    }

    /// <summary>
    /// Device and inode of the file <paramref name="path"/> names after symlinks, as "major:minor:inode", or null when
    /// it cannot be seen: what tells the same file from another renamed or linked over the same path.
    /// </summary>
    public static string? FileIdentity(string path)
    {
        if (LinuxFileCalls.StatX(LinuxFileCalls.AT_FDCWD, path, 0, LinuxFileCalls.STATX_INO, out var status) != 0) return null;
        return $"{status.DeviceMajor}:{status.DeviceMinor}:{status.Inode}";
    }

    /// <summary>True when canonical <paramref name="path"/> is <paramref name="root"/> or lies under it (both canonical).</summary>
    public static bool IsInside(string path, string root) =>
        root == "/" || path == root || path.StartsWith(root.EndsWith('/') ? root : root + "/", StringComparison.Ordinal);
}
