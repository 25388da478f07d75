namespace NbdQcow.Tests.Shared;

/// <summary>Finds the repository root (the folder holding NbdQcow.sln) by walking up from the test binaries.</summary>
public static class RepositoryRoot
{
    private static readonly Lazy<string> Root = new(Find);

    public static string Path => Root.Value;

    /// <summary>The launcher every test starts the server through: `./nbdqcow` at the repository root.</summary>
    public static string Launcher => System.IO.Path.Combine(Path, "nbdqcow");

    private static string Find()
    {
        var directory = new DirectoryInfo(AppContext.BaseDirectory);
        for (var depth = 0; directory is not null && depth < 20; depth++, directory = directory.Parent)
        {
            if (File.Exists(System.IO.Path.Combine(directory.FullName, "NbdQcow.sln")))
            {
                return directory.FullName;
            }
        }

        throw new InvalidOperationException($"NbdQcow.sln not found above {AppContext.BaseDirectory}");
    }
}
