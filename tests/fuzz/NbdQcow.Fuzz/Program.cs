using System.Runtime.InteropServices;
using SharpFuzz;

namespace NbdQcow.Fuzz;

/// <summary>
/// Fuzz driver: `NbdQcow.Fuzz TARGET` runs under afl-fuzz (SharpFuzz's fork server); `NbdQcow.Fuzz TARGET FILE...`
/// replays inputs without AFL (triage, CI's crash report); `--list` names the targets.
/// </summary>
public static class Program
{
    public static IReadOnlyList<IFuzzTarget> Targets { get; } =
    [
        new ProtocolParsersTarget(),
        new NbdSessionTarget(),
        new Qcow2HeaderTarget(),
        new Qcow2ImageTarget(),
        new Qcow2CheckTarget(),
        new ClusterDecompressorTarget(),
        new JournalTarget(),
        new Qcow2RecoverTarget(),
    ];

    public static int Main(string[] args)
    {
        if (args.Length == 0 || args[0] is "--list" or "-h" or "--help")
        {
            foreach (var t in Targets) Console.WriteLine($"{t.Name,-14} {t.Description}");
            return args.Length == 0 ? 2 : 0;
        }
        var target = Targets.FirstOrDefault(t => t.Name == args[0]);
        if (target is null)
        {
            Console.Error.WriteLine($"unknown target '{args[0]}' (have: {string.Join(", ", Targets.Select(t => t.Name))})");
            return 2;
        }
        if (args.Length > 1) return Replay(target, args[1..]);
        Fuzzer.Run(stream =>
        {
            using var copy = new MemoryStream();
            stream.CopyTo(copy);
            target.Run(copy.ToArray());
        });
        return 0;
    }

    private static int Replay(IFuzzTarget target, string[] paths)
    {
        GiveInstrumentationACoverageBuffer();
        int failures = 0;
        foreach (var path in paths)
        {
            var files = Directory.Exists(path) ? Directory.GetFiles(path) : [path];
            foreach (var file in files)
            {
                try
                {
                    target.Run(File.ReadAllBytes(file));
                }
                catch (Exception e)
                {
                    failures++;
                    Console.Error.WriteLine($"{file}: {e}");
                }
            }
        }
        return failures == 0 ? 0 : 1;
    }

    /// <summary>
    /// Assemblies instrumented by sharpfuzz record every branch into AFL's shared memory, which exists only under
    /// afl-fuzz; outside it the pointer is null and the first branch throws NullReferenceException. A replay (run.sh
    /// replays crashes and hangs, and a developer replays a finding) gives them a private buffer instead, so it runs
    /// the same code as the fuzzer did. Harmless with uninstrumented assemblies.
    /// </summary>
    private static unsafe void GiveInstrumentationACoverageBuffer()
    {
        if (SharpFuzz.Common.Trace.SharedMem == null)
            SharpFuzz.Common.Trace.SharedMem = (byte*)NativeMemory.AllocZeroed(1 << 17);
    }
}
