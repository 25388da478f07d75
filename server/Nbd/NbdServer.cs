using System.Collections.Concurrent;
using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using NbdQcow.Server.Exports;
using Pipelines.Sockets.Unofficial;

namespace NbdQcow.Server.Nbd;

/// <summary>
/// Accepts connections on TCP and Unix sockets and runs one <see cref="NbdSession"/> per connection over
/// Pipelines.Sockets.Unofficial. Hostile clients are bounded server-wide: a connection limit (lowered to fit the
/// open-file limit), a negotiation deadline, and the <see cref="BufferBudget"/> for payload memory. Stopping
/// closes the listeners, lets every connection answer what it has in flight, then returns (the caller flushes
/// and closes the exports).
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
    private readonly ConcurrentDictionary<long, Connection> _connections = new();
    private readonly RateLimitedLog _acceptErrors;
    private readonly RateLimitedLog _refusals;
    private Task? _trimLoop;
    private int _descriptorsAtStart = -1;
    private long _nextSessionId;
    private int _connectionCount;

    // Receive: a WRITE payload is copied out as it arrives, so the pipe never needs to hold a whole 32 MiB request
    // (or, once the pipe is drained, received straight into its buffer: ReceiveLanding, whose per-connection pool and
    // inline schedulers replace these ones).
    // Inline schedulers: the receive loop runs on the socket's completion thread (it only decodes and
    // dispatches), and a reply's flush drives the socket send on the replying thread, saving two thread hops
    // per request.
    private static readonly PipeOptions ReceiveOptions = new(
        readerScheduler: PipeScheduler.Inline, writerScheduler: PipeScheduler.Inline,
        pauseWriterThreshold: 4 * 1024 * 1024, resumeWriterThreshold: 2 * 1024 * 1024,
        minimumSegmentSize: 64 * 1024, useSynchronizationContext: false);

    // Send: READ replies go in 1 MiB pieces with a flush each, so a pipe holds at most a few MiB for a client
    // that does not read its replies; the data waiting behind it is charged to the server's buffer budget.
    private static readonly PipeOptions SendOptions = new(
        readerScheduler: PipeScheduler.Inline, writerScheduler: PipeScheduler.ThreadPool,
        pauseWriterThreshold: 4 * 1024 * 1024, resumeWriterThreshold: 2 * 1024 * 1024,
        minimumSegmentSize: 64 * 1024, useSynchronizationContext: false);

    /// <summary>Descriptors kept free for everything but client connections (image files, the runtime's own).</summary>
    private const int DescriptorReserve = 32;

    /// <summary>Longest pause between accept attempts while the process is out of file descriptors.</summary>
    private const int MaxAcceptBackoffMs = 1000;

    /// <summary>Once nothing is buffered for this long, large pooled buffers are given back to the OS.</summary>
    private const int TrimAfterIdleMs = 2000;

    private const int ListenBacklog = 128;
    private const int SolSocket = 1;
    private const int SoReuseAddr = 2;

    private const SocketConnectionOptions ConnectionOptions = SocketConnectionOptions.InlineReads | SocketConnectionOptions.InlineWrites;

    public NbdServer(ExportRegistry registry, NbdSessionOptions? sessionOptions = null, ServerLog? log = null)
    {
        _registry = registry;
        _sessionOptions = sessionOptions ?? new NbdSessionOptions();
        _log = log ?? ServerLog.Quiet;
        _acceptErrors = new RateLimitedLog(_log, TimeSpan.FromSeconds(10));
        _refusals = new RateLimitedLog(_log, TimeSpan.FromSeconds(10));
    }

    /// <summary>WRITE payload bytes the open connections received straight into their payload buffers (diagnostics, tests).</summary>
    public long PayloadBytesReceivedInPlace => _connections.Values.Sum(connection => connection.Session.PayloadBytesReceivedInPlace);

    /// <summary>Connections open now (negotiating or serving).</summary>
    public int ConnectionCount => Volatile.Read(ref _connectionCount);

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
            // SO_REUSEADDR alone: a restart may bind over connections in TIME_WAIT. .NET's ReuseAddress also sets
            // SO_REUSEPORT on Linux, which lets a second server bind the same port and take half the clients.
            if (OperatingSystem.IsLinux())
            {
                socket.SetRawSocketOption(SolSocket, SoReuseAddr, BitConverter.GetBytes(1));
            }
            socket.Bind(endPoint);
            socket.Listen(ListenBacklog);
        }
        catch (SocketException ex)
        {
            socket.Dispose();
            var reason = ex.SocketErrorCode == SocketError.AddressAlreadyInUse ? "address already in use" : ex.Message;
            throw new IOException($"cannot listen on {FormatEndPoint(endPoint)}: {reason}", ex);
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

    /// <summary>Serves an already listening socket (TCP or Unix) handed over by a service manager; returns its address.</summary>
    public EndPoint ListenInherited(Socket listener)
    {
        var endPoint = listener.LocalEndPoint ?? throw new IOException("socket activation: a handed-over socket has no address");
        Start(listener, endPoint, isTcp: listener.AddressFamily != AddressFamily.Unix);
        return endPoint;
    }

    /// <summary>Starts listening on a Unix socket at <paramref name="path"/>, replacing a stale socket file.</summary>
    public void ListenUnix(string path)
    {
        if (File.Exists(path))
        {
            if (IsSocketFile(path))
            {
                if (IsServedUnixSocket(path))
                {
                    throw new IOException($"cannot listen on Unix socket {path}: address already in use (a server accepts connections there)");
                }
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
            socket.Listen(ListenBacklog);
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

    /// <summary>A live server accepts a connection; a stale socket file left by a dead one refuses it.</summary>
    internal static bool IsServedUnixSocket(string path)
    {
        // Non-blocking: a live server with a full backlog answers EAGAIN instead of stalling our start.
        using var probe = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified) { Blocking = false };
        try
        {
            probe.Connect(new UnixDomainSocketEndPoint(path));
            return true;
        }
        catch (SocketException ex)
        {
            return ex.SocketErrorCode != SocketError.ConnectionRefused;
        }
    }

    private static string FormatEndPoint(IPEndPoint endPoint) =>
        endPoint.AddressFamily == AddressFamily.InterNetworkV6 ? $"[{endPoint.Address}]:{endPoint.Port}" : $"{endPoint.Address}:{endPoint.Port}";

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
        _trimLoop ??= Task.Run(TrimLoopAsync);
        if (_descriptorsAtStart < 0)
        {
            _descriptorsAtStart = DescriptorLimit.CountOpen();
        }
    }

    private async Task AcceptLoopAsync(Socket listener, bool isTcp)
    {
        var token = _stopping.Token;
        var backoffMs = 0;
        while (!token.IsCancellationRequested)
        {
            Socket client;
            try
            {
                client = await listener.AcceptAsync(token).ConfigureAwait(false);
                backoffMs = 0;
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
                // Out of descriptors (EMFILE/ENFILE) or memory: the pending connection stays queued and accept fails
                // again at once. Close the oldest connection still negotiating to free a descriptor; with none to
                // close, wait (growing to a second) instead of spinning a core and flooding the log.
                var freed = ex.SocketErrorCode is SocketError.TooManyOpenSockets or SocketError.NoBufferSpaceAvailable
                    && CloseOldestNegotiating();
                _acceptErrors.Warn($"accept failed: {ex.Message}; {(freed ? "closed the oldest connection still negotiating" : "backing off")}");
                if (!freed)
                {
                    backoffMs = Math.Clamp(backoffMs * 2, 10, MaxAcceptBackoffMs);
                    try
                    {
                        await Task.Delay(backoffMs, token).ConfigureAwait(false);
                    }
                    catch (OperationCanceledException)
                    {
                        return;
                    }
                }
                continue;
            }
            try
            {
                Admit(client, isTcp, token);
            }
            catch (Exception ex) when (ex is SocketException or IOException or OutOfMemoryException or ObjectDisposedException)
            {
                _acceptErrors.Warn($"could not set up a connection: {ex.Message}");
                client.Dispose();
            }
        }
    }

    private void Admit(Socket client, bool isTcp, CancellationToken token)
    {
        var limit = EffectiveMaxConnections();
        if (Volatile.Read(ref _connectionCount) >= limit && !CloseOldestNegotiating())
        {
            // Every slot is serving a client past negotiation: refuse at once rather than hold the descriptor.
            var why = limit < _sessionOptions.MaxConnections ? $" (MaxConnections {_sessionOptions.MaxConnections}, lowered by the open-file limit)" : "";
            _refusals.Warn($"{limit} connections, the limit{why}, are being served; refusing new connections");
            _sessionOptions.Metrics?.ConnectionRefused();
            client.Dispose();
            return;
        }
        if (isTcp)
        {
            client.NoDelay = true;
            EnableKeepAlive(client);
        }
        var id = Interlocked.Increment(ref _nextSessionId);
        var peer = isTcp ? client.RemoteEndPoint?.ToString() ?? "tcp" : $"unix#{id}";
        var landing = new ReceiveLanding { Socket = client };
        var socketConnection = SocketConnection.Create(client, SendOptions, landing.Options(ReceiveOptions), ConnectionOptions, peer);
        var session = new NbdSession(socketConnection, _registry, _sessionOptions, _log, peer, landing);
        var negotiation = CancellationTokenSource.CreateLinkedTokenSource(token);
        if (_sessionOptions.HandshakeTimeout is { } timeout)
        {
            negotiation.CancelAfter(timeout);
        }
        var connection = new Connection(id, peer, socketConnection, session, negotiation);
        Interlocked.Increment(ref _connectionCount);
        _sessionOptions.Metrics?.ConnectionOpened();
        _connections[id] = connection;
        _log.Debug($"{peer}: connected");
        connection.Run = RunSessionAsync(connection, token);
    }

    /// <summary>Seconds a TCP connection may sit silent before the kernel probes the peer.</summary>
    internal const int KeepAliveIdleSeconds = 30;
    private const int KeepAliveIntervalSeconds = 10;
    private const int KeepAliveProbes = 6;

    /// <summary>
    /// A client whose host vanished leaves a half-open connection: no FIN or RST ever comes, and an idle client
    /// sends nothing, so its slot and buffers would be held forever. Keepalive probes drop it after about 90 s.
    /// </summary>
    private void EnableKeepAlive(Socket client)
    {
        try
        {
            client.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.KeepAlive, true);
            client.SetSocketOption(SocketOptionLevel.Tcp, SocketOptionName.TcpKeepAliveTime, KeepAliveIdleSeconds);
            client.SetSocketOption(SocketOptionLevel.Tcp, SocketOptionName.TcpKeepAliveInterval, KeepAliveIntervalSeconds);
            client.SetSocketOption(SocketOptionLevel.Tcp, SocketOptionName.TcpKeepAliveRetryCount, KeepAliveProbes);
        }
        catch (SocketException e)
        {
            // The connection is still worth serving; it just is not probed.
            _log.Debug($"keepalive could not be enabled on a connection: {e.Message}");
        }
    }

    /// <summary>MaxConnections, lowered when the open-file limit would run out first.</summary>
    private int EffectiveMaxConnections()
    {
        var max = _sessionOptions.MaxConnections;
        if (DescriptorLimit.Soft() is { } soft)
        {
            var room = soft - Math.Max(_descriptorsAtStart, 0) - DescriptorReserve;
            if (room < max)
            {
                max = (int)Math.Max(1, room);
            }
        }
        return max;
    }

    /// <summary>Closes the connection that has waited longest without finishing negotiation; false if there is none.</summary>
    private bool CloseOldestNegotiating()
    {
        Connection? oldest = null;
        foreach (var (_, connection) in _connections)
        {
            if (connection.Session.IsNegotiating && connection.IsCounted && (oldest is null || connection.Id < oldest.Id))
            {
                oldest = connection;
            }
        }
        if (oldest is null)
        {
            return false;
        }
        if (!oldest.TryUncount())
        {
            return false; // ended or closed meanwhile; its slot is free already
        }
        Interlocked.Decrement(ref _connectionCount);
        try
        {
            oldest.Negotiation.Cancel();
        }
        catch (ObjectDisposedException)
        {
        }
        // The session ends on the cancellation; closing the socket now frees its descriptor at once.
        oldest.SocketConnection.Dispose();
        _sessionOptions.Metrics?.ConnectionRefused();
        _refusals.Warn("connection limit or descriptors exhausted: closing connections that have not finished negotiating");
        return true;
    }

    private async Task RunSessionAsync(Connection connection, CancellationToken token)
    {
        try
        {
            await Task.Yield();
            await connection.Session.RunAsync(token, connection.Negotiation.Token).ConfigureAwait(false);
            if (!connection.Session.IsNegotiating && !connection.ClosedByServer)
            {
                await WaitUntilSentAsync(connection.SocketConnection).ConfigureAwait(false);
            }
        }
        catch (Exception ex)
        {
            _log.Warn($"session ended with an error: {ex.Message}");
        }
        finally
        {
            connection.SocketConnection.Dispose();
            connection.Negotiation.Dispose();
            _connections.TryRemove(connection.Id, out _);
            _sessionOptions.Metrics?.ConnectionClosed();
            if (connection.TryUncount())
            {
                Interlocked.Decrement(ref _connectionCount);
            }
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

    /// <summary>
    /// Every half second: gives large pooled buffers back once nothing has been buffered for a while, and while
    /// requests wait for the buffer budget, closes connections that hold part of it but have not taken their
    /// replies for <see cref="NbdSessionOptions.ReplyStallTimeout"/> (so clients that never read cannot starve the rest).
    /// </summary>
    private async Task TrimLoopAsync()
    {
        var budget = _sessionOptions.Budget;
        var stall = (long)_sessionOptions.ReplyStallTimeout.TotalMilliseconds;
        try
        {
            while (true)
            {
                await Task.Delay(500, _stopping.Token).ConfigureAwait(false);
                if (budget.IdleMilliseconds >= TrimAfterIdleMs)
                {
                    budget.Buffers.Trim();
                }
                var now = Environment.TickCount64;
                var contended = budget.IsContended;
                foreach (var (_, connection) in _connections)
                {
                    if (connection.SocketConnection.ShutdownKind != PipeShutdownKind.None)
                    {
                        connection.Session.NoteClientGone();
                    }
                    var held = connection.Session.BufferedBytes;
                    if (connection.BudgetStalledMilliseconds(now, held, stall) >= stall && contended)
                    {
                        var what = connection.Session.IsAwaitingPayload
                            ? "for a WRITE payload it announced and does not send"
                            : "of replies it has not read";
                        CloseStalled(connection, $"holds {held / 1024.0 / 1024.0:0.#} MiB {what} " +
                            $"(less than {Connection.RequiredProgress(held, stall) / 1024 / 1024.0:0.#} MiB moved in {stall / 1000.0:0.#} s) " +
                            "while other requests wait for buffer space");
                    }
                }
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    private void CloseStalled(Connection connection, string why)
    {
        if (connection.ClosedByServer)
        {
            return;
        }
        connection.ClosedByServer = true;
        _log.Warn($"{connection.Peer}: {why}; closing the connection");
        connection.SocketConnection.Dispose();
    }

    /// <summary>
    /// Stops accepting, stops reading new requests, and waits (bounded) until in-flight requests are answered.
    /// A client that does not read its replies would hold that wait to its end: a connection whose replies make
    /// no progress for <see cref="NbdSessionOptions.ShutdownStallGrace"/> is closed instead.
    /// </summary>
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
        var deadline = Environment.TickCount64 + (long)drainTimeout.TotalMilliseconds;
        var grace = (long)_sessionOptions.ShutdownStallGrace.TotalMilliseconds;
        while (!_connections.IsEmpty && Environment.TickCount64 < deadline)
        {
            var running = new List<Task>(_connections.Count);
            var now = Environment.TickCount64;
            foreach (var (_, connection) in _connections)
            {
                running.Add(connection.Run);
                if (connection.StalledMilliseconds(now) >= grace)
                {
                    CloseStalled(connection, $"replies unread for {grace / 1000.0:0.#} s while stopping");
                }
            }
            try
            {
                await Task.WhenAll(running).WaitAsync(TimeSpan.FromMilliseconds(250)).ConfigureAwait(false);
            }
            catch (TimeoutException)
            {
            }
        }
        if (!_connections.IsEmpty)
        {
            _log.Warn($"{_connections.Count} connection(s) still busy after {drainTimeout.TotalSeconds:0}s; closing anyway");
        }
        if (_trimLoop is not null)
        {
            await _trimLoop.ConfigureAwait(false);
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

    /// <summary>One accepted connection, as the server tracks it.</summary>
    private sealed class Connection(long id, string peer, SocketConnection socketConnection, NbdSession session, CancellationTokenSource negotiation)
    {
        public long Id { get; } = id;
        public string Peer { get; } = peer;
        public SocketConnection SocketConnection { get; } = socketConnection;
        public NbdSession Session { get; } = session;

        /// <summary>Cancelled by the handshake timeout, by the server stopping, or to make room for a new connection.</summary>
        public CancellationTokenSource Negotiation { get; } = negotiation;

        public Task Run { get; set; } = Task.CompletedTask;

        private int _counted = 1;

        /// <summary>Still counted against the connection limit (not ended, not closed to make room).</summary>
        public bool IsCounted => Volatile.Read(ref _counted) == 1;

        /// <summary>True for the one caller that stops counting this connection.</summary>
        public bool TryUncount() => Interlocked.Exchange(ref _counted, 0) == 1;

        /// <summary>Closed by the server while stopping (replies unread): nothing left worth waiting to send.</summary>
        public volatile bool ClosedByServer;

        private readonly object _progressLock = new();
        private long _bytesSentAtMark;
        private long _markedAt = Environment.TickCount64;

        /// <summary>
        /// How long replies have been waiting without the client taking at least <see cref="ProgressBytes"/> of them
        /// (0 when nothing waits). A client that reads, however slowly, keeps resetting it.
        /// </summary>
        public long StalledMilliseconds(long now)
        {
            lock (_progressLock)
            {
                var sent = SocketConnection.BytesSent;
                if (SocketConnection.GetCounters().BytesWaitingToBeSent == 0 || sent - _bytesSentAtMark >= ProgressBytes)
                {
                    _bytesSentAtMark = sent;
                    _markedAt = now;
                    return 0;
                }
                return now - _markedAt;
            }
        }

        private const long ProgressBytes = 1024 * 1024;

        /// <summary>
        /// While others wait for the budget, bytes held must flow back at least this fast: a client holding N bytes
        /// must move N in this time (at least <see cref="ProgressBytes"/> per window), so a slow reader or a client
        /// trickling a WRITE payload cannot sit on a large share.
        /// </summary>
        private const long DrainMilliseconds = 30_000;

        private long _movedAtBudgetMark;
        private long _budgetMarkedAt = Environment.TickCount64;

        /// <summary>Bytes a connection holding <paramref name="held"/> must move within <paramref name="windowMilliseconds"/>.</summary>
        public static long RequiredProgress(long held, long windowMilliseconds) =>
            Math.Max(ProgressBytes, held / DrainMilliseconds * windowMilliseconds);

        /// <summary>
        /// How long this connection has held part of the budget while the client is what holds it up (replies
        /// waiting to be taken, or a WRITE payload still to arrive) without moving
        /// <see cref="RequiredProgress"/> bytes (replies sent plus payload received); 0 otherwise. A request the
        /// storage holds (an error policy) is not the client's doing and does not count.
        /// </summary>
        public long BudgetStalledMilliseconds(long now, long held, long windowMilliseconds)
        {
            lock (_progressLock)
            {
                var moved = SocketConnection.BytesSent + Session.PayloadBytesReceived;
                var clientBound = Session.IsAwaitingPayload || SocketConnection.GetCounters().BytesWaitingToBeSent > 0;
                if (held == 0 || !clientBound || moved - _movedAtBudgetMark >= RequiredProgress(held, windowMilliseconds))
                {
                    _movedAtBudgetMark = moved;
                    _budgetMarkedAt = now;
                    return 0;
                }
                return now - _budgetMarkedAt;
            }
        }
    }
}
