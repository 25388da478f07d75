namespace NbdQcow.Tests.Shared;

/// <summary>Finds the repository root (the folder holding NbdQcow.sln) by walking up from the test binaries.</summary>
public static class RepositoryRoot
{
    private static readonly Lazy<string> Root = new(Find);

    public static string Path => Root.Value;

    /// <summary>Names another nbdqcow executable (a relative path from the repository root) for the tests to start instead of the launcher (tests/native/run.sh: the native binary).</summary>
    public const string BinaryVariable = "NBDQCOW_TEST_BINARY";

    /// <summary>
    /// The executable every test starts the server through: `./nbdqcow` at the repository root, or the one
    /// <see cref="BinaryVariable"/> names.
    /// </summary>
    public static string Launcher =>
        Environment.GetEnvironmentVariable(BinaryVariable) is { Length: > 0 } binary
            ? System.IO.Path.GetFullPath(binary, Path)
            : System.IO.Path.Combine(Path, "nbdqcow");

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
