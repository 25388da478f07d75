using System.Diagnostics;
using System.Text;

namespace NbdQcow.Tests.Interop.Vm;

/// <summary>
/// The guest's serial console as qemu writes it to a file (`-serial file:PATH`), read by polling: qemu keeps the
/// file open, so it is opened shared and read whole each time (the guest's output is small).
/// </summary>
public sealed class SerialConsoleLog(string path)
{
    private static readonly TimeSpan PollInterval = TimeSpan.FromMilliseconds(200);

    public string Path { get; } = path;

    /// <summary>The console so far, split in lines (carriage returns removed).</summary>
    public IReadOnlyList<string> Lines()
    {
        if (!File.Exists(Path))
        {
            return [];
        }

        using var stream = new FileStream(Path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        using var reader = new StreamReader(stream, Encoding.UTF8);
        return reader.ReadToEnd().Replace("\r", "", StringComparison.Ordinal).Split('\n');
    }

    /// <summary>
    /// Waits until a line contains one of <paramref name="markers"/> and returns that marker; null once
    /// <paramref name="stopped"/> says the guest is gone or time ran out first.
    /// </summary>
    public async Task<string?> WaitForLineAsync(TimeSpan timeout, Func<bool> stopped, params string[] markers)
    {
        var clock = Stopwatch.StartNew();
        while (true)
        {
            // Look at the exit before reading, so lines written just before qemu exited count.
            var exited = stopped();
            foreach (var line in Lines())
            {
                foreach (var marker in markers)
                {
                    if (line.Contains(marker, StringComparison.Ordinal))
                    {
                        return marker;
                    }
                }
            }

            if (exited || clock.Elapsed >= timeout)
            {
                return null;
            }

            await Task.Delay(PollInterval);
        }
    }
}
