using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using NbdQcow.Server.Nbd;
using NbdQcow.Server.Storage;

namespace NbdQcow.Server.Control;

/// <summary>
/// The control socket (`serve --control PATH`): a Unix socket speaking one JSON object per line each way.
/// Requests: {"command":"status"}, {"command":"inactivate"}, {"command":"activate"}, optionally with "export":"NAME"
/// (default: every export). Replies: {"ok":true,"message":...,"exports":[{"name","path","state"}]} or
/// {"ok":false,"error":...,"exports":[...]}. Commands run one at a time. The socket file is created with the
/// process's umask; put it in a folder only the operator can reach.
/// </summary>
public sealed class ControlServer : IAsyncDisposable
{
    private const int MaxLineBytes = 64 * 1024;

    private readonly string _path;
    private readonly IReadOnlyList<KeyValuePair<string, HandoffBlockDevice>> _exports;
    private readonly ServerLog _log;
    private readonly Socket _listener;
    private readonly SemaphoreSlim _oneCommand = new(1, 1);
    private readonly CancellationTokenSource _stop = new();
    private readonly List<Task> _connections = [];
    private Task? _acceptLoop;

    /// <summary>Each export's storage state (error policies, refused flushes), shown by status; set before serving.</summary>
    public IReadOnlyDictionary<string, ErrorPolicyBlockDevice>? Storage { get; set; }

    private ControlServer(string path, IReadOnlyList<KeyValuePair<string, HandoffBlockDevice>> exports, ServerLog log, Socket listener)
    {
        _path = path;
        _exports = exports;
        _log = log;
        _listener = listener;
    }

    /// <summary>Binds <paramref name="path"/> (replacing a stale socket, never a live one or a regular file) and starts accepting.</summary>
    public static ControlServer Start(string path, IReadOnlyList<KeyValuePair<string, HandoffBlockDevice>> exports, ServerLog log)
    {
        var fullPath = Path.GetFullPath(path);
        if (File.Exists(fullPath) || Directory.Exists(fullPath))
        {
            if ((File.GetAttributes(fullPath) & FileAttributes.Directory) != 0 || !IsSocket(fullPath))
                throw new IOException($"--control {fullPath} exists and is not a socket; refusing to replace it");
            // A live socket belongs to a running server (another one's control socket, or this one's NBD socket):
            // replacing it would send that server's commands here. Only a stale one, left by a dead server, goes.
            if (NbdServer.IsServedUnixSocket(fullPath))
                throw new IOException($"cannot listen on control socket {fullPath}: address already in use (a server accepts connections there)");
            File.Delete(fullPath);
        }
        var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            listener.Bind(new UnixDomainSocketEndPoint(fullPath));
            listener.Listen(16);
        }
        catch (SocketException ex)
        {
            listener.Dispose();
            throw new IOException($"cannot listen on control socket {fullPath}: {ex.Message}", ex);
        }
        var server = new ControlServer(fullPath, exports, log, listener);
        server._acceptLoop = server.AcceptLoopAsync();
        return server;
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        _listener.Dispose();
        var pending = new List<Task> { _acceptLoop ?? Task.CompletedTask };
        lock (_connections) pending.AddRange(_connections);
        try
        {
            await Task.WhenAll(pending).WaitAsync(TimeSpan.FromSeconds(10)).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is TimeoutException or OperationCanceledException or SocketException or IOException or ObjectDisposedException)
        {
            // Shutting down: a client that does not go away is not waited for.
        }
        try { File.Delete(_path); } catch (IOException) { }
        _stop.Dispose();
    }

    private async Task AcceptLoopAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            Socket client;
            try
            {
                client = await _listener.AcceptAsync(_stop.Token).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is OperationCanceledException or ObjectDisposedException or SocketException)
            {
                return;
            }
            var connection = ServeClientAsync(client);
            lock (_connections)
            {
                _connections.RemoveAll(t => t.IsCompleted);
                _connections.Add(connection);
            }
        }
    }

    private async Task ServeClientAsync(Socket client)
    {
        using var _ = client;
        await using var stream = new NetworkStream(client, ownsSocket: false);
        var buffer = new byte[MaxLineBytes];
        var filled = 0;
        try
        {
            while (!_stop.IsCancellationRequested)
            {
                var newline = Array.IndexOf(buffer, (byte)'\n', 0, filled);
                if (newline < 0)
                {
                    if (filled == buffer.Length)
                    {
                        await ReplyAsync(stream, Error($"request longer than {MaxLineBytes} bytes")).ConfigureAwait(false);
                        return;
                    }
                    var n = await stream.ReadAsync(buffer.AsMemory(filled), _stop.Token).ConfigureAwait(false);
                    if (n == 0) return;
                    filled += n;
                    continue;
                }
                var line = Encoding.UTF8.GetString(buffer, 0, newline).Trim();
                Buffer.BlockCopy(buffer, newline + 1, buffer, 0, filled - newline - 1);
                filled -= newline + 1;
                if (line.Length == 0) continue;
                // Off the socket engine's thread: a handover flushes and closes files, which blocks.
                var reply = await Task.Run(() => HandleAsync(line)).ConfigureAwait(false);
                await ReplyAsync(stream, reply).ConfigureAwait(false);
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or IOException or SocketException or ObjectDisposedException)
        {
            // The client went away or the server is stopping.
        }
    }

    private static async Task ReplyAsync(NetworkStream stream, byte[] reply)
    {
        await stream.WriteAsync(reply).ConfigureAwait(false);
        await stream.FlushAsync().ConfigureAwait(false);
    }

    /// <summary>Parses and runs one request; always returns one reply line.</summary>
    internal async Task<byte[]> HandleAsync(string line)
    {
        string? command;
        string? exportName;
        try
        {
            using var request = JsonDocument.Parse(line);
            if (request.RootElement.ValueKind != JsonValueKind.Object)
                return Error("a request is one JSON object, e.g. {\"command\":\"status\"}");
            command = request.RootElement.TryGetProperty("command", out var c) && c.ValueKind == JsonValueKind.String ? c.GetString() : null;
            exportName = request.RootElement.TryGetProperty("export", out var e) && e.ValueKind == JsonValueKind.String ? e.GetString() : null;
        }
        catch (JsonException ex)
        {
            return Error($"not JSON: {ex.Message}");
        }
        if (command is not ("status" or "inactivate" or "activate"))
            return Error($"unknown command '{command}'; allowed: status, inactivate, activate");
        var targets = new List<KeyValuePair<string, HandoffBlockDevice>>();
        foreach (var export in _exports)
            if (exportName is null || export.Key == exportName) targets.Add(export);
        if (targets.Count == 0)
            return Error($"no export '{exportName}'; exports: {string.Join(", ", _exports.Select(e => e.Key))}");

        await _oneCommand.WaitAsync().ConfigureAwait(false);
        try
        {
            var messages = new List<string>();
            foreach (var (name, device) in targets)
            {
                if (command == "status") continue;
                try
                {
                    var (changed, message) = command == "inactivate"
                        ? await device.InactivateAsync().ConfigureAwait(false)
                        : await device.ActivateAsync().ConfigureAwait(false);
                    messages.Add($"export '{name}': {message}");
                    if (changed) _log.Info($"control: export '{name}' {message}");
                }
                catch (Exception ex)
                {
                    // Whatever went wrong, the operator gets it as the reply (and the export keeps its previous state).
                    _log.Warn($"control: {command} of export '{name}' failed: {ex.Message}");
                    return Error($"{command} of export '{name}' failed: {ex.Message}", messages);
                }
            }
            return Reply(true, command == "status" ? "status" : string.Join("; ", messages), null);
        }
        finally
        {
            _oneCommand.Release();
        }
    }

    private byte[] Error(string error, List<string>? done = null) =>
        Reply(false, done is { Count: > 0 } ? string.Join("; ", done) : null, error);

    private byte[] Reply(bool ok, string? message, string? error)
    {
        var output = new MemoryStream();
        // Relaxed escaping: the reply is read by people too, and qemu's lock messages quote permission names.
        using (var writer = new Utf8JsonWriter(output, new JsonWriterOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            writer.WriteStartObject();
            writer.WriteBoolean("ok", ok);
            if (message is not null) writer.WriteString("message", message);
            if (error is not null) writer.WriteString("error", error);
            writer.WriteStartArray("exports");
            foreach (var (name, device) in _exports)
            {
                writer.WriteStartObject();
                writer.WriteString("name", name);
                writer.WriteString("path", device.Path);
                writer.WriteString("state", device.IsActive ? "active" : "inactive");
                if (Storage is not null && Storage.TryGetValue(name, out var storage)) writer.WriteString("storage", storage.StorageStatus);
                writer.WriteEndObject();
            }
            writer.WriteEndArray();
            writer.WriteEndObject();
        }
        output.WriteByte((byte)'\n');
        return output.ToArray();
    }

    private static bool IsSocket(string path)
    {
        try
        {
            using var _ = File.OpenHandle(path, FileMode.Open, FileAccess.Read);
            return false;
        }
        catch (IOException)
        {
            return true; // ENXIO: a socket cannot be opened as a file
        }
        catch (UnauthorizedAccessException)
        {
            return false;
        }
    }
}
