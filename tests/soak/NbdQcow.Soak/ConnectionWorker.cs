using NbdQcow.Protocol;
using NbdQcow.Protocol.Client;

namespace NbdQcow.Soak;

/// <summary>
/// One client connection with <see cref="SoakRun.QueueDepth"/> request loops over its own region of the disk:
/// reads (checked against the model), writes, zeroes, trims and flushes. Reconnects after its connection was
/// killed (by the soak, or by a server restart); any other error is a failure of the run.
/// </summary>
public sealed class ConnectionWorker(int index, int firstBlock, int blockCount, SoakRun run)
{
    private const int MaxBlocksPerRequest = 16;
    private static readonly TimeSpan RequestDeadline = TimeSpan.FromSeconds(30);
    private readonly Random _random = new(unchecked(run.Seed * 31 + index));
    private Connection? _current;

    public int Index { get; } = index;

    public async Task RunAsync(CancellationToken stop)
    {
        while (!stop.IsCancellationRequested)
        {
            await run.Gate.WaitOpenAsync(stop).ConfigureAwait(false);
            NbdClient client;
            int generation = run.Generation;
            try
            {
                client = await NbdClient.ConnectUnixAsync(run.Socket, new NbdClientOptions { ExportName = "soak" }, stop).ConfigureAwait(false);
            }
            catch (Exception e) when (e is IOException or System.Net.Sockets.SocketException or NbdNegotiationException && (run.Disrupting || !run.Gate.IsOpen))
            {
                await Task.Delay(50, stop).ConfigureAwait(false);
                continue;
            }
            Interlocked.Increment(ref run.Counters.Connections);
            var connection = new Connection(client, generation);
            _current = connection;
            try
            {
                var loops = new Task[run.QueueDepth];
                for (int i = 0; i < loops.Length; i++) loops[i] = SlotLoopAsync(connection, stop);
                await Task.WhenAll(loops).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested)
            {
            }
            finally
            {
                _current = null;
                await client.DisposeAsync().ConfigureAwait(false);
            }
        }
    }

    /// <summary>Closes the connection under its requests in flight (a client that dies mid-request).</summary>
    public async Task KillAsync()
    {
        if (_current is not { } connection) return;
        connection.Killed = true;
        Interlocked.Increment(ref run.Counters.ClientKills);
        await connection.Client.DisposeAsync().ConfigureAwait(false);
    }

    private async Task SlotLoopAsync(Connection connection, CancellationToken stop)
    {
        var buffer = new byte[MaxBlocksPerRequest * BlockPattern.BlockSize];
        while (!stop.IsCancellationRequested)
        {
            await Task.Delay(run.PaceDelay(_random), stop).ConfigureAwait(false);
            // Counted before the gate is looked at, so a pause that saw zero in flight sees no request start after it.
            Interlocked.Increment(ref run.InFlight);
            if (!run.Gate.IsOpen)
            {
                Interlocked.Decrement(ref run.InFlight);
                await run.Gate.WaitOpenAsync(stop).ConfigureAwait(false);
                continue;
            }
            if (!await OneRequestAsync(connection, buffer).ConfigureAwait(false)) return;
        }
    }

    /// <summary>Sends one request and checks its outcome; false once the connection is gone.</summary>
    private async Task<bool> OneRequestAsync(Connection connection, byte[] buffer)
    {
        var client = connection.Client;
        int roll = _random.Next(100);
        if (roll < 5)
        {
            long mark = run.Model.FlushMark();
            if (!await SendAsync(connection, "FLUSH", () => client.FlushAsync(), null).ConfigureAwait(false)) return false;
            run.Model.FlushCompleted(mark);
            Interlocked.Increment(ref run.Counters.Flushes);
            return true;
        }
        int count = 1 + _random.Next(MaxBlocksPerRequest);
        int first = firstBlock + _random.Next(blockCount - count + 1);
        if (!run.Model.TryReserve(first, count))
        {
            Interlocked.Decrement(ref run.InFlight);
            return true;
        }
        ulong offset = (ulong)first * BlockPattern.BlockSize;
        ulong length = (ulong)count * BlockPattern.BlockSize;
        if (roll < 45)
        {
            var data = buffer.AsMemory(0, (int)length);
            bool done = await SendAsync(connection, "READ", () => client.ReadAsync(offset, data), (first, count)).ConfigureAwait(false);
            if (done)
            {
                for (int i = 0; i < count; i++)
                    run.CheckBlock(first + i, data.Span.Slice(i * BlockPattern.BlockSize, BlockPattern.BlockSize), afterCrash: false, "read");
                run.Model.Release(first, count);
                Interlocked.Increment(ref run.Counters.Reads);
            }
            return done;
        }
        var kind = roll < 80 ? OperationKind.Write : roll < 90 ? OperationKind.Zero : OperationKind.Trim;
        var op = run.Model.BeginWrite(first, count, kind);
        Func<Task> send = kind switch
        {
            OperationKind.Write => () =>
            {
                for (int i = 0; i < count; i++)
                    BlockPattern.Fill(buffer.AsSpan(i * BlockPattern.BlockSize, BlockPattern.BlockSize), first + i, op.Tag);
                return client.WriteAsync(offset, buffer.AsMemory(0, (int)length), _random.Next(20) == 0 ? NbdCommandFlags.Fua : NbdCommandFlags.None);
            }
            ,
            OperationKind.Zero => () => client.WriteZeroesAsync(offset, length, _random.Next(2) == 0 ? NbdCommandFlags.NoHole : NbdCommandFlags.None),
            _ => () => client.TrimAsync(offset, length),
        };
        if (!await SendAsync(connection, kind.ToString().ToUpperInvariant(), send, (first, count)).ConfigureAwait(false)) return false;
        run.Model.Acknowledge(op);
        run.Model.Release(first, count);
        switch (kind)
        {
            case OperationKind.Write: Interlocked.Increment(ref run.Counters.Writes); break;
            case OperationKind.Zero: Interlocked.Increment(ref run.Counters.Zeroes); break;
            default: Interlocked.Increment(ref run.Counters.Trims); break;
        }
        return true;
    }

    /// <summary>
    /// Runs one request. True when it was answered with success. False when its connection died under it
    /// (killed on purpose, or the server being restarted); its blocks stay reserved a while, since the server may
    /// still be carrying it out. Anything else fails the run.
    /// </summary>
    private async Task<bool> SendAsync(Connection connection, string what, Func<Task> request, (int First, int Count)? blocks)
    {
        try
        {
            await request().WaitAsync(RequestDeadline).ConfigureAwait(false);
            Interlocked.Decrement(ref run.InFlight);
            return true;
        }
        catch (Exception) when (connection.Killed || run.Disrupting || connection.Generation != run.Generation)
        {
            Interlocked.Increment(ref run.Counters.Interrupted);
            Interlocked.Decrement(ref run.InFlight);
            if (blocks is { } b) run.Quarantine(b.First, b.Count);
            return false;
        }
        catch (TimeoutException)
        {
            Interlocked.Decrement(ref run.InFlight);
            run.Fail($"connection {Index}: {what}{Describe(blocks)} got no reply within {RequestDeadline.TotalSeconds} s");
            return false;
        }
        catch (Exception e)
        {
            Interlocked.Decrement(ref run.InFlight);
            if (blocks is { } b) run.Model.Release(b.First, b.Count);
            run.Fail($"connection {Index}: {what}{Describe(blocks)} failed: {e.GetType().Name}: {e.Message}");
            return false;
        }
    }

    private static string Describe((int First, int Count)? blocks) =>
        blocks is { } b ? $" at {(long)b.First * BlockPattern.BlockSize} length {b.Count * BlockPattern.BlockSize}" : "";

    /// <summary>One connection's client; <see cref="Killed"/> once the soak closed it on purpose.</summary>
    private sealed class Connection(NbdClient client, int generation)
    {
        public NbdClient Client { get; } = client;
        public int Generation { get; } = generation;
        public volatile bool Killed;
    }
}
