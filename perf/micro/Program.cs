using BenchmarkDotNet.Running;

namespace NbdQcow.Perf.Micro;

/// <summary>Entry point: `dotnet run -c Release --project perf/micro -- --filter '*'` (BenchmarkDotNet's switcher).</summary>
public static class Program
{
    public static void Main(string[] args) => BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
}
