namespace NbdQcow.Tests.Crash.ProcessKill;

/// <summary>Finds the repository root (the folder holding NbdQcow.sln and the ./nbdqcow launcher).</summary>
public static class RepositoryRoot
{
    public static string Find()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "NbdQcow.sln")) && File.Exists(Path.Combine(dir.FullName, "nbdqcow")))
                return dir.FullName;
        throw new DirectoryNotFoundException($"no NbdQcow.sln with ./nbdqcow above {AppContext.BaseDirectory}");
    }
}
