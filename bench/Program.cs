using System.CommandLine;

namespace NbdQcow.Bench;

/// <summary>
/// `nbdqcow bench` as its own executable, kept out of the server: the launcher runs it for `./nbdqcow bench ...`
/// and tells it where the server is. Each measured mode runs in a real `nbdqcow serve` child process.
/// </summary>
public static class Program
{
    public static int Main(string[] args)
    {
        var root = BenchCommand.Create();
        return root.Parse(args).Invoke();
    }
}
