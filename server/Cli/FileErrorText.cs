using NbdQcow.HostIo;

namespace NbdQcow.Server.Cli;

/// <summary>
/// File errors in the words of the system ("No such file or directory", "Is a directory", "Permission denied")
/// instead of the runtime's exception text, which names .NET concepts and sometimes a parameter.
/// </summary>
internal static class FileErrorText
{
    /// <summary>The message for a failure opening <paramref name="path"/>; other failures keep their own text.</summary>
    public static string Describe(string path, Exception error) => error switch
    {
        HostIoException { IsDirectory: true } folder => $"{folder.FilePath}: Is a directory",
        _ when IsFileAccess(error) && Directory.Exists(path) => $"{path}: Is a directory",
        FileNotFoundException or DirectoryNotFoundException => $"{path}: No such file or directory",
        UnauthorizedAccessException => $"{path}: Permission denied",
        _ => error.Message.Contains(path, StringComparison.Ordinal) ? error.Message : $"{path}: {error.Message}",
    };

    /// <summary>True for the failures <see cref="Describe"/> rewords: the file is missing, a folder, or not ours to open.</summary>
    public static bool IsFileAccess(Exception error) =>
        error is FileNotFoundException or DirectoryNotFoundException or UnauthorizedAccessException
            or HostIoException { IsDirectory: true };
}
