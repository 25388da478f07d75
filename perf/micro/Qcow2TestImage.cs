using System.Diagnostics;

namespace NbdQcow.Perf.Micro;

/// <summary>
/// A fully allocated qcow2 image (64 KiB clusters) in a temp directory, made by qemu-img from non-zero raw data,
/// plus a fixed list of random 4 KiB-aligned offsets so every benchmark run touches the same clusters.
/// </summary>
internal sealed class Qcow2TestImage : IDisposable
{
    public const long Size = 256L << 20;

    public Qcow2TestImage()
    {
        Directory = System.IO.Directory.CreateTempSubdirectory("nbdqcow-micro-").FullName;
        var raw = System.IO.Path.Combine(Directory, "data.raw");
        var block = new byte[1 << 20];
        new Random(7).NextBytes(block);
        using (var file = File.Create(raw))
        {
            for (long written = 0; written < Size; written += block.Length)
            {
                file.Write(block);
            }
        }
        Path = System.IO.Path.Combine(Directory, "data.qcow2");
        Run("qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, Path);
        File.Delete(raw);
        var random = new Random(11);
        Offsets = new long[4096];
        for (var i = 0; i < Offsets.Length; i++)
        {
            Offsets[i] = random.NextInt64(Size / 4096) * 4096;
        }
    }

    public string Directory { get; }

    public string Path { get; }

    public long[] Offsets { get; }

    public void Dispose() => System.IO.Directory.Delete(Directory, recursive: true);

    private static void Run(string tool, params string[] arguments)
    {
        var start = new ProcessStartInfo(tool) { RedirectStandardError = true, UseShellExecute = false };
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }
        using var process = Process.Start(start) ?? throw new InvalidOperationException($"cannot start {tool} (scripts/install-deps.sh installs qemu-utils)");
        var error = process.StandardError.ReadToEnd();
        if (!process.WaitForExit(120_000) || process.ExitCode != 0)
        {
            throw new InvalidOperationException($"{tool} failed: {error}");
        }
    }
}
