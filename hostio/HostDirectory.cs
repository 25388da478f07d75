using System.Runtime.InteropServices;
using NbdQcow.HostIo.Native;

namespace NbdQcow.HostIo;

/// <summary>Folder-level durability: a newly created file is only durable once its folder entry is synced too.</summary>
public static class HostDirectory
{
    /// <summary>fsyncs the folder holding <paramref name="filePath"/>, making a create or rename in it durable.</summary>
    public static void SyncParentOf(string filePath)
    {
        var folder = System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(filePath)) ?? "/";
        var fd = LinuxFileCalls.Open(folder, LinuxFileCalls.O_RDONLY | LinuxFileCalls.O_CLOEXEC, 0);
        if (fd < 0) throw new HostIoException("open", folder, Marshal.GetLastPInvokeError());
        try
        {
            int result;
            int errno;
            do
            {
                result = LinuxFileCalls.FSync(fd);
                errno = result < 0 ? Marshal.GetLastPInvokeError() : 0;
            } while (result < 0 && errno == LinuxFileCalls.EINTR);
            if (result < 0) throw new HostIoException("fsync", folder, errno);
        }
        finally
        {
            LinuxFileCalls.Close(fd);
        }
    }
}
