using System.Text.Json;

namespace NbdQcow.Tests.Unit.Qcow2;

/// <summary>Runs qemu-img / qemu-io / bash with a timeout; a failure throws with the tool's stderr.</summary>
internal static class QemuTools
{
    private static readonly TimeSpan Timeout = TimeSpan.FromMinutes(2);

    public static string Run(string fileName, params string[] args) => RunIn(null, fileName, args);

    /// <summary>Runs in <paramref name="workingDirectory"/> (qemu resolves a relative data_file name against it).</summary>
    public static string RunIn(string? workingDirectory, string fileName, params string[] args)
    {
        var result = ToolRunner.Run(fileName, args, Timeout, workingDirectory);
        if (result.ExitCode != 0)
            throw new InvalidOperationException($"{fileName} {string.Join(' ', args)} exited {result.ExitCode}: {result.Stderr}{result.Stdout}");
        return result.Stdout;
    }

    /// <summary>
    /// Makes a LUKS-encrypted qcow2 with qemu-img. qemu-img times its PBKDF and fails with "Unable to get accurate
    /// CPU usage" on a busy machine, so it is retried a few times.
    /// </summary>
    public static void CreateLuksImage(string folder, string name, string size) =>
        Bash(folder,
            $"for try in 1 2 3 4 5; do qemu-img create -q --object secret,id=sec0,data=123456 -f qcow2 " +
            $"-o encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=100 {name} {size} && exit 0; " +
            $"rm -f {name}; sleep 1; done; exit 1");

    /// <summary>Runs a bash script in <paramref name="folder"/> with `set -euo pipefail`.</summary>
    public static string Bash(string folder, string script) =>
        Run("/bin/bash", "-c", $"set -euo pipefail\ncd '{folder}'\n{script}");

    /// <summary>qemu-img map of the whole chain: (start, length, data, zero) runs.</summary>
    public static List<(long Start, long Length, bool Data, bool Zero)> Map(string image, string format = "qcow2")
    {
        var json = RunIn(Path.GetDirectoryName(image), "qemu-img", "map", "--output=json", "-f", format, image);
        var result = new List<(long, long, bool, bool)>();
        foreach (var e in JsonDocument.Parse(json).RootElement.EnumerateArray())
            result.Add((e.GetProperty("start").GetInt64(), e.GetProperty("length").GetInt64(), e.GetProperty("data").GetBoolean(), e.GetProperty("zero").GetBoolean()));
        return result;
    }
}
