using System.Diagnostics;
using NbdQcow.Cache;
using NbdQcow.Protocol;

namespace NbdQcow.Server.Metrics;

/// <summary>
/// One export's view of <see cref="ServerMetrics"/>: the tag lists (export, command; export, errno) are built here
/// once, so the per-request calls only add to the instruments and allocate nothing.
/// </summary>
public sealed class ExportMetrics
{
    private static readonly string[] CommandNames = ["read", "write", "disconnect", "flush", "trim", "cache", "write_zeroes", "block_status", "resize"];
    private const string OtherCommand = "other";

    private static readonly (NbdErrno Errno, string Name)[] ErrnoNames =
    [
        (NbdErrno.PermissionDenied, "EPERM"), (NbdErrno.Io, "EIO"), (NbdErrno.OutOfMemory, "ENOMEM"), (NbdErrno.InvalidArgument, "EINVAL"),
        (NbdErrno.NoSpace, "ENOSPC"), (NbdErrno.Overflow, "EOVERFLOW"), (NbdErrno.NotSupported, "ENOTSUP"), (NbdErrno.Shutdown, "ESHUTDOWN"),
    ];

    private readonly ServerMetrics _metrics;
    // Index = command code; the last entry is for codes outside the list.
    private readonly KeyValuePair<string, object?>[][] _commandTags;
    private readonly KeyValuePair<string, object?>[][] _errnoTags;
    private readonly KeyValuePair<string, object?>[] _otherErrnoTags;

    internal ExportMetrics(ServerMetrics metrics, string exportName, Func<UnflushedChanges?> unflushed)
    {
        _metrics = metrics;
        Name = exportName;
        Unflushed = unflushed;
        ExportTag = [new("export", exportName)];
        _commandTags = new KeyValuePair<string, object?>[CommandNames.Length + 1][];
        for (var i = 0; i < _commandTags.Length; i++)
        {
            _commandTags[i] = [new("export", exportName), new("command", i < CommandNames.Length ? CommandNames[i] : OtherCommand)];
        }
        _errnoTags = new KeyValuePair<string, object?>[ErrnoNames.Length][];
        for (var i = 0; i < ErrnoNames.Length; i++)
        {
            _errnoTags[i] = [new("export", exportName), new("errno", ErrnoNames[i].Name)];
        }
        _otherErrnoTags = [new("export", exportName), new("errno", "other")];
    }

    public string Name { get; }

    internal Func<UnflushedChanges?> Unflushed { get; }

    internal KeyValuePair<string, object?>[] ExportTag { get; }

    /// <summary>One answered request: counted, its bytes (commands that carry a length) and its latency recorded.</summary>
    public void RecordRequest(NbdCommand command, ulong length, long startTimestamp)
    {
        var code = (int)command;
        var tags = _commandTags[code < CommandNames.Length ? code : CommandNames.Length];
        _metrics.Requests.Add(1, tags);
        if (length > 0 && command is NbdCommand.Read or NbdCommand.Write or NbdCommand.WriteZeroes or NbdCommand.Trim or NbdCommand.Cache)
        {
            _metrics.RequestBytes.Add((long)Math.Min(length, long.MaxValue), tags);
        }
        _metrics.RequestDuration.Record(Stopwatch.GetElapsedTime(startTimestamp).TotalSeconds, tags);
    }

    public void RecordError(NbdErrno errno)
    {
        var tags = _otherErrnoTags;
        for (var i = 0; i < ErrnoNames.Length; i++)
        {
            if (ErrnoNames[i].Errno == errno)
            {
                tags = _errnoTags[i];
                break;
            }
        }
        _metrics.RequestErrors.Add(1, tags);
    }

    /// <summary>A durable flush of the image finished (the image calls this through its open options).</summary>
    public void RecordFlush(TimeSpan duration)
    {
        _metrics.Flushes.Add(1, ExportTag);
        _metrics.FlushDuration.Record(duration.TotalSeconds, ExportTag);
    }
}
