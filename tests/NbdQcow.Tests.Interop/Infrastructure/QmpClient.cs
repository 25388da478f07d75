using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace NbdQcow.Tests.Interop.Infrastructure;

/// <summary>
/// A minimal QMP client over a Unix socket: one JSON object per line; replies ("return"/"error") answer commands in
/// order, events may come in between and are kept for <see cref="WaitForEventAsync"/>. Every wait is bounded.
/// </summary>
public sealed class QmpClient : IAsyncDisposable
{
    private static readonly TimeSpan CommandTimeout = TimeSpan.FromSeconds(60);

    private readonly Socket _socket;
    private readonly StreamReader _reader;
    private readonly NetworkStream _stream;
    private readonly List<JsonObject> _events = [];
    private readonly StringBuilder _transcript = new();

    private QmpClient(Socket socket)
    {
        _socket = socket;
        _stream = new NetworkStream(socket, ownsSocket: false);
        _reader = new StreamReader(_stream, Encoding.UTF8);
    }

    /// <summary>Everything sent and received, for failure messages.</summary>
    public string Transcript => _transcript.ToString();

    /// <summary>Connects (retrying until the socket accepts, bounded), reads the greeting and leaves capabilities negotiation.</summary>
    public static async Task<QmpClient> ConnectAsync(string socketPath, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            try
            {
                await socket.ConnectAsync(new UnixDomainSocketEndPoint(socketPath));
                var client = new QmpClient(socket);
                var greeting = await client.ReadMessageAsync(timeout);
                Assert.True(greeting.ContainsKey("QMP"), $"not a QMP greeting: {greeting.ToJsonString()}");
                await client.ExecuteAsync("qmp_capabilities");
                return client;
            }
            catch (SocketException) when (DateTime.UtcNow < deadline)
            {
                socket.Dispose();
                await Task.Delay(50);
            }
        }
    }

    /// <summary>Runs a command; fails the test with the transcript if qemu answers with an error.</summary>
    public async Task<JsonNode?> ExecuteAsync(string command, object? arguments = null)
    {
        var result = await TryExecuteAsync(command, arguments);
        if (result.Error is { } error)
        {
            Assert.Fail($"QMP {command} failed: {error}\n{Transcript}");
        }
        return result.Return;
    }

    /// <summary>Runs a command and returns its result or its error message (class: desc).</summary>
    public async Task<(JsonNode? Return, string? Error)> TryExecuteAsync(string command, object? arguments = null)
    {
        var request = new JsonObject { ["execute"] = command };
        if (arguments is not null)
        {
            request["arguments"] = JsonSerializer.SerializeToNode(arguments);
        }
        var line = request.ToJsonString() + "\n";
        _transcript.Append("-> ").Append(line);
        await _stream.WriteAsync(Encoding.UTF8.GetBytes(line));
        while (true)
        {
            var message = await ReadMessageAsync(CommandTimeout);
            if (message.ContainsKey("event"))
            {
                _events.Add(message);
                continue;
            }
            if (message["error"] is JsonObject error)
            {
                return (null, $"{error["class"]}: {error["desc"]}");
            }
            return (message["return"], null);
        }
    }

    /// <summary>Waits (bounded) for an event named <paramref name="name"/> that <paramref name="match"/> accepts, and takes it.</summary>
    public async Task<JsonObject> WaitForEventAsync(string name, Func<JsonObject, bool>? match, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            for (var i = 0; i < _events.Count; i++)
            {
                var candidate = _events[i];
                if ((string?)candidate["event"] == name && (match is null || match(candidate)))
                {
                    _events.RemoveAt(i);
                    return candidate;
                }
            }
            var left = deadline - DateTime.UtcNow;
            if (left <= TimeSpan.Zero)
            {
                Assert.Fail($"no QMP event {name} within {timeout.TotalSeconds:F0} s\n{Transcript}");
            }
            var message = await ReadMessageAsync(left);
            if (message.ContainsKey("event"))
            {
                _events.Add(message);
            }
        }
    }

    private async Task<JsonObject> ReadMessageAsync(TimeSpan timeout)
    {
        using var cancel = new CancellationTokenSource(timeout);
        string? line;
        try
        {
            line = await _reader.ReadLineAsync(cancel.Token);
        }
        catch (OperationCanceledException)
        {
            Assert.Fail($"QMP: nothing received within {timeout.TotalSeconds:F0} s\n{Transcript}");
            throw;
        }
        if (line is null)
        {
            Assert.Fail($"QMP connection closed\n{Transcript}");
        }
        _transcript.Append("<- ").AppendLine(line);
        return JsonNode.Parse(line) as JsonObject ?? throw new InvalidDataException($"QMP sent a non-object: {line}");
    }

    public ValueTask DisposeAsync()
    {
        _reader.Dispose();
        _stream.Dispose();
        _socket.Dispose();
        return ValueTask.CompletedTask;
    }
}
