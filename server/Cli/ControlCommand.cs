using System.CommandLine;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;

namespace NbdQcow.Server.Cli;

/// <summary>
/// `nbdqcow control PATH status|inactivate|activate [--export NAME]`: sends one command to a server's control socket
/// (`serve --control PATH`), prints the JSON reply, exits 0 when it says ok, 1 otherwise.
/// </summary>
internal static class ControlCommand
{
    public static Command Create()
    {
        var socket = new Argument<string>("PATH") { Description = "The server's control socket (serve --control PATH)." };
        var verb = new Argument<string>("COMMAND") { Description = "status, inactivate (hand the image over) or activate (take it)." };
        verb.AcceptOnlyFromAmong("status", "inactivate", "activate");
        var export = new Option<string?>("--export") { HelpName = "NAME", Description = "Only this export (default: every export)." };
        var timeout = new Option<int>("--timeout")
        {
            HelpName = "SECONDS",
            Description = "Give up waiting for the reply after this many seconds.",
            DefaultValueFactory = _ => 120,
        };
        var command = new Command("control", "Send a migration control command (status, inactivate, activate) to a running server.")
        {
            socket, verb, export, timeout,
        };
        command.SetAction(parseResult =>
        {
            var path = parseResult.GetValue(socket)!;
            try
            {
                var reply = SendAsync(path, parseResult.GetValue(verb)!, parseResult.GetValue(export),
                    TimeSpan.FromSeconds(Math.Max(1, parseResult.GetValue(timeout)))).GetAwaiter().GetResult();
                Console.Out.WriteLine(reply);
                using var json = JsonDocument.Parse(reply);
                return json.RootElement.TryGetProperty("ok", out var ok) && ok.ValueKind == JsonValueKind.True ? 0 : 1;
            }
            catch (SocketException e) when (e.SocketErrorCode is SocketError.ConnectionRefused or SocketError.AddressNotAvailable
                or SocketError.AddressFamilyNotSupported || !File.Exists(path))
            {
                // A missing path and a socket file nobody accepts on both mean: no server is there.
                Console.Error.WriteLine(File.Exists(path)
                    ? $"nbdqcow control: {path}: nobody is listening (the server that made it has exited)"
                    : $"nbdqcow control: {path}: No such file or directory (no server runs with --control {path})");
                return 1;
            }
            catch (Exception e) when (e is IOException or SocketException or JsonException or TimeoutException or OperationCanceledException)
            {
                Console.Error.WriteLine($"nbdqcow control: {path}: {e.Message}");
                return 1;
            }
        });
        return command;
    }

    internal static async Task<string> SendAsync(string path, string verb, string? export, TimeSpan timeout)
    {
        using var deadline = new CancellationTokenSource(timeout);
        using var client = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await client.ConnectAsync(new UnixDomainSocketEndPoint(path), deadline.Token);
        var request = new MemoryStream();
        using (var writer = new Utf8JsonWriter(request))
        {
            writer.WriteStartObject();
            writer.WriteString("command", verb);
            if (export is not null) writer.WriteString("export", export);
            writer.WriteEndObject();
        }
        request.WriteByte((byte)'\n');
        await client.SendAsync(request.ToArray(), SocketFlags.None, deadline.Token);
        var reply = new MemoryStream();
        var buffer = new byte[4096];
        while (true)
        {
            var n = await client.ReceiveAsync(buffer, SocketFlags.None, deadline.Token);
            if (n == 0) throw new IOException("the server closed the control connection without a reply");
            var newline = Array.IndexOf(buffer, (byte)'\n', 0, n);
            reply.Write(buffer, 0, newline < 0 ? n : newline);
            if (newline >= 0) return Encoding.UTF8.GetString(reply.ToArray());
        }
    }
}
