using System.Collections.Concurrent;
using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using Pipelines.Sockets.Unofficial;
using NbdQcow.Server.Exports;

namespace NbdQcow.Server.Nbd;

/// <summary>
/// Accepts connections on TCP and Unix sockets and runs one <see cref="NbdSession"/> per connection over
/// Pipelines.Sockets.Unofficial. Stopping closes the listeners, lets every connection answer what it has
/// in flight, then returns (the caller flushes and closes the exports).
/// </summary>
public sealed class NbdServer : IAsyncDisposable
{
    private readonly ExportRegistry _registry;
    private readonly NbdSessionOptions _sessionOptions;
    private readonly ServerLog _log;
    private readonly CancellationTokenSource _stopping = new();
    private readonly List<Socket> _listeners = [];
    private readonly List<string> _socketPaths = [];
    private readonly List<Task> _acceptLoops = [];
    private readonly ConcurrentDictionary<long, Task> _sessions = new();
    private long _nextSessionId;

    // Receive: a WRITE payload is copied out as it arrives, so the pipe never needs to hold a whole 32 MiB request.
    // Inline schedulers: the receive loop runs on the socket's completion thread (it only decodes and
    // dispatches), and a reply's flush drives the socket send on the replying thread, saving two thread hops
    // per request.
    private static readonly PipeOptions ReceiveOptions = new(
        readerScheduler: PipeScheduler.Inline, writerScheduler: PipeScheduler.Inline,
        pauseWriterThreshold: 4 * 1024 * 1024, resumeWriterThreshold: 2 * 1024 * 1024,
        minimumSegmentSize: 64 * 1024, useSynchronizationContext: false);

    // Send: a whole READ reply (up to 32 MiB + header) is written before its flush.
    private static readonly PipeOptions SendOptions = new(
        readerScheduler: PipeScheduler.Inline, writerScheduler: PipeScheduler.ThreadPool,
        pauseWriterThreshold: 64 * 1024 * 1024, resumeWriterThreshold: 32 * 1024 * 1024,
        minimumSegmentSize: 64 * 1024, useSynchronizationContext: false);

    private const SocketConnectionOptions ConnectionOptions = SocketConnectionOptions.InlineReads | SocketConnectionOptions.InlineWrites;

    public NbdServer(ExportRegistry registry, NbdSessionOptions? sessionOptions = null, ServerLog? log = null)
    {
        _registry = registry;
        _sessionOptions = sessionOptions ?? new NbdSessionOptions();
        _log = log ?? ServerLog.Quiet;
    }

    /// <summary>Endpoints actually bound (port 0 resolved), in the order they were added.</summary>
    public List<EndPoint> BoundEndPoints { get; } = [];

    /// <summary>Starts listening on a TCP endpoint; returns the bound endpoint (port 0 picks a free port).</summary>
    public IPEndPoint ListenTcp(IPEndPoint endPoint)
    {
        var socket = new Socket(endPoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            if (endPoint.AddressFamily == AddressFamily.InterNetworkV6)
            {
                socket.DualMode = false;
            }
            socket.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
            socket.Bind(endPoint);
            socket.Listen(128);
        }
        catch (SocketException ex)
        {
            socket.Dispose();
            throw new IOException($"cannot listen on {endPoint}: {ex.Message}", ex);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
        var bound = (IPEndPoint)socket.LocalEndPoint!;
        Start(socket, bound, isTcp: true);
        return bound;
    }

    /// <summary>Starts listening on a Unix socket at <paramref name="path"/>, replacing a stale socket file.</summary>
    public void ListenUnix(string path)
    {
        if (File.Exists(path))
        {
            if (IsSocketFile(path))
            {
                File.Delete(path);
            }
            else
            {
                throw new IOException($"{path} exists and is not a socket; refusing to replace it");
            }
        }
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        var endPoint = new UnixDomainSocketEndPoint(path);
        try
        {
            socket.Bind(endPoint);
            socket.Listen(128);
        }
        catch (SocketException ex)
        {
            socket.Dispose();
            throw new IOException($"cannot listen on Unix socket {path}: {ex.Message}", ex);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
        _socketPaths.Add(path);
        Start(socket, endPoint, isTcp: false);
    }

    private static bool IsSocketFile(string path)
    {
        try
        {
            // A socket cannot be opened as a file: ENXIO. Anything readable is a real file we must not delete.
            using var _ = File.OpenHandle(path, FileMode.Open, FileAccess.Read);
            return false;
        }
        catch (IOException)
        {
            return true;
        }
    }

    private void Start(Socket listener, EndPoint endPoint, bool isTcp)
    {
        _listeners.Add(listener);
        BoundEndPoints.Add(endPoint);
        _acceptLoops.Add(Task.Run(() => AcceptLoopAsync(listener, isTcp)));
    }

    private async Task AcceptLoopAsync(Socket listener, bool isTcp)
    {
        var token = _stopping.Token;
        while (!token.IsCancellationRequested)
        {
            Socket client;
            try
            {
                client = await listener.AcceptAsync(token).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return;
            }
            catch (ObjectDisposedException)
            {
                return;
            }
            catch (SocketException ex)
            {
                if (token.IsCancellationRequested)
                {
                    return;
                }
                _log.Warn($"accept failed: {ex.Message}");
                continue;
            }
            if (isTcp)
            {
                client.NoDelay = true;
            }
            var id = Interlocked.Increment(ref _nextSessionId);
            var peer = isTcp ? client.RemoteEndPoint?.ToString() ?? "tcp" : $"unix#{id}";
            var connection = SocketConnection.Create(client, SendOptions, ReceiveOptions, ConnectionOptions, peer);
            var session = new NbdSession(connection, _registry, _sessionOptions, _log, peer);
            _log.Debug($"{peer}: connected");
            _sessions[id] = RunSessionAsync(id, connection, session, token);
        }
    }

    private async Task RunSessionAsync(long id, SocketConnection connection, NbdSession session, CancellationToken token)
    {
        try
        {
            await Task.Yield();
            await session.RunAsync(token).ConfigureAwait(false);
            await WaitUntilSentAsync(connection).ConfigureAwait(false);
        }
        catch (Exception ex)
        {
            _log.Warn($"session ended with an error: {ex.Message}");
        }
        finally
        {
            connection.Dispose();
            _sessions.TryRemove(id, out _);
        }
    }

    /// <summary>
    /// The session completed its output, but the connection's send loop may still hold replies; disposing now
    /// would drop them (a reply to a request answered just before DISC or shutdown). Bounded wait.
    /// </summary>
    private static async Task WaitUntilSentAsync(SocketConnection connection)
    {
        var deadline = Environment.TickCount64 + 10_000;
        while (connection.GetCounters().BytesWaitingToBeSent > 0
            && Environment.TickCount64 < deadline)
        {
            await Task.Delay(2).ConfigureAwait(false);
        }
    }

    /// <summary>Stops accepting, stops reading new requests, and waits (bounded) until in-flight requests are answered.</summary>
    public async Task StopAsync(TimeSpan drainTimeout)
    {
        if (!_stopping.IsCancellationRequested)
        {
            _stopping.Cancel();
        }
        foreach (var listener in _listeners)
        {
            listener.Dispose();
        }
        _listeners.Clear();
        try
        {
            await Task.WhenAll(_acceptLoops).ConfigureAwait(false);
        }
        catch (Exception)
        {
            // accept loops end on their own; errors were logged
        }
        try
        {
            await Task.WhenAll(_sessions.Values).WaitAsync(drainTimeout).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            _log.Warn($"{_sessions.Count} connection(s) still busy after {drainTimeout.TotalSeconds:0}s; closing anyway");
        }
        foreach (var path in _socketPaths)
        {
            try
            {
                File.Delete(path);
            }
            catch (IOException)
            {
            }
        }
        _socketPaths.Clear();
    }

    public async ValueTask DisposeAsync()
    {
        await StopAsync(TimeSpan.FromSeconds(30)).ConfigureAwait(false);
        _stopping.Dispose();
    }
}
