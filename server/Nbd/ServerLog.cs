namespace NbdQcow.Server.Nbd;

/// <summary>Line-oriented log on stderr (stdout carries only the "listening" line tests wait for).</summary>
public sealed class ServerLog
{
    private readonly TextWriter _writer;

    public ServerLog(TextWriter writer, bool verbose)
    {
        _writer = writer;
        Verbose = verbose;
    }

    public static ServerLog Quiet { get; } = new(TextWriter.Null, verbose: false);

    public bool Verbose { get; }

    public void Info(string message) => Write("info", message);

    public void Warn(string message) => Write("warning", message);

    public void Debug(string message)
    {
        if (Verbose)
        {
            Write("debug", message);
        }
    }

    private void Write(string level, string message)
    {
        lock (_writer)
        {
            _writer.WriteLine($"nbdqcow: {level}: {message}");
            _writer.Flush();
        }
    }
}
