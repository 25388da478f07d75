namespace NbdQcow.Soak;

/// <summary>Command line of the soak (see tests/soak/README.md).</summary>
public sealed record SoakOptions
{
    public double Minutes { get; init; } = 2;
    public int Connections { get; init; } = 32;
    public int QueueDepth { get; init; } = 32;
    public int ImageMiB { get; init; } = 256;
    /// <summary>Requests per second over all connections: keeps the CI run light on a shared machine.</summary>
    public int OpsPerSecond { get; init; } = 1000;
    /// <summary>Seconds between server restarts (SIGTERM and SIGKILL alternate).</summary>
    public int RestartEverySeconds { get; init; } = 25;
    public string Cache { get; init; } = "writeback";
    public int Seed { get; init; } = Environment.TickCount;
    public string? Launcher { get; init; }
    public string? WorkDir { get; init; }
    /// <summary>Print every resource sample as it is taken.</summary>
    public bool Verbose { get; init; }

    public static SoakOptions Parse(string[] args)
    {
        var o = new SoakOptions();
        for (int i = 0; i < args.Length; i++)
        {
            string Value() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value");
            o = args[i] switch
            {
                "--minutes" => o with { Minutes = double.Parse(Value(), System.Globalization.CultureInfo.InvariantCulture) },
                "--connections" => o with { Connections = int.Parse(Value()) },
                "--queue-depth" => o with { QueueDepth = int.Parse(Value()) },
                "--image-mib" => o with { ImageMiB = int.Parse(Value()) },
                "--ops-per-second" => o with { OpsPerSecond = int.Parse(Value()) },
                "--restart-every" => o with { RestartEverySeconds = int.Parse(Value()) },
                "--cache" => o with { Cache = Value() },
                "--seed" => o with { Seed = int.Parse(Value()) },
                "--launcher" => o with { Launcher = Value() },
                "--work-dir" => o with { WorkDir = Value() },
                "--verbose" => o with { Verbose = true },
                _ => throw new ArgumentException($"unknown option {args[i]}"),
            };
        }
        if (o.Minutes <= 0 || o.Connections < 1 || o.QueueDepth < 1 || o.OpsPerSecond < 1 || o.RestartEverySeconds < 5)
            throw new ArgumentException("--minutes, --connections, --queue-depth, --ops-per-second must be positive, --restart-every at least 5");
        if ((long)o.ImageMiB * 256 / o.Connections < 64)
            throw new ArgumentException("each connection needs at least 64 blocks of 4 KiB: raise --image-mib or lower --connections");
        return o;
    }
}
