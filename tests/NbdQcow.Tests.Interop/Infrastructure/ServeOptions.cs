namespace NbdQcow.Tests.Interop.Infrastructure;

/// <summary>How to start `./nbdqcow serve` for one test. TCP on a free 127.0.0.1 port unless <see cref="UnixSocket"/>.</summary>
public sealed record ServeOptions
{
    /// <summary>The IMAGE argument; null when a config file declares the exports.</summary>
    public string? ImagePath { get; init; }

    /// <summary>Listen on a Unix socket in a fresh temp folder (--socket) instead of TCP (--listen).</summary>
    public bool UnixSocket { get; init; }

    /// <summary>--export NAME (null: the server's default, the file name without extension and "").</summary>
    public string? ExportName { get; init; }

    public bool ReadOnly { get; init; }

    /// <summary>--cache MODE (writeback, writethrough, none, directsync, unsafe).</summary>
    public string? CacheMode { get; init; }

    /// <summary>--create SIZE: make a sparse image first.</summary>
    public string? CreateSize { get; init; }

    /// <summary>The server's working directory (null: the repository root).</summary>
    public string? WorkingDirectory { get; init; }

    /// <summary>--config FILE.</summary>
    public string? ConfigFile { get; init; }

    /// <summary>Any further arguments, appended after the ones above.</summary>
    public IReadOnlyList<string> ExtraArguments { get; init; } = [];

    /// <summary>Environment variables for the server (e.g. NBDQCOW__* overrides).</summary>
    public IReadOnlyDictionary<string, string>? Environment { get; init; }

    /// <summary>Bound on the wait until the server accepts a connection and sends its greeting.</summary>
    public TimeSpan ReadyTimeout { get; init; } = TimeSpan.FromSeconds(30);
}
