using System.Diagnostics;
using NbdQcow.Protocol.Client;

namespace NbdQcow.Bench;

/// <summary>
/// Drives an NBD server with one <see cref="BenchWorkload"/> through the project's own NBD client:
/// <c>Connections</c> connections, each with <c>QueueDepth</c> requests always in flight, for a fixed time.
/// Each worker owns its buffer, random source and histogram, so measuring costs no locks.
/// </summary>
internal sealed class BenchLoadGenerator
{
    private readonly string _host;
    private readonly int _port;

    public BenchLoadGenerator(string host, int port)
    {
        _host = host;
        _port = port;
    }

    /// <summary>Writes the first <paramref name="bytes"/> of the export sequentially (1 MiB, 4 in flight), then FLUSH,
    /// so that reads hit allocated data.</summary>
    public async Task FillAsync(ulong bytes, IProgress<double>? progress, CancellationToken cancellationToken)
    {
        await using var client = await NbdClient.ConnectTcpAsync(_host, _port, new NbdClientOptions(), cancellationToken).ConfigureAwait(false);
        var size = Math.Min(bytes, client.Export.Size);
        const int chunk = 1 << 20;
        var next = 0L;
        var done = 0L;
        async Task WorkerAsync(int seed)
        {
            var buffer = NewPayload(chunk, seed);
            while (true)
            {
                var offset = (ulong)(Interlocked.Add(ref next, chunk) - chunk);
                if (offset >= size)
                {
                    return;
                }
                var length = (int)Math.Min((ulong)chunk, size - offset);
                await client.WriteAsync(offset, buffer.AsMemory(0, length), cancellationToken: cancellationToken).ConfigureAwait(false);
                progress?.Report((double)Interlocked.Add(ref done, length) / size);
            }
        }
        var workers = new Task[4];
        for (var i = 0; i < workers.Length; i++)
        {
            workers[i] = WorkerAsync(i + 1);
        }
        await Task.WhenAll(workers).ConfigureAwait(false);
        await client.FlushAsync(cancellationToken).ConfigureAwait(false);
        await client.DisconnectAsync(cancellationToken).ConfigureAwait(false);
    }

    public async Task<BenchLoadResult> RunAsync(BenchWorkload workload, TimeSpan duration, ulong regionBytes,
        IProgress<double>? progress, CancellationToken cancellationToken)
    {
        var clients = new List<NbdClient>();
        try
        {
            for (var i = 0; i < workload.Connections; i++)
            {
                clients.Add(await NbdClient.ConnectTcpAsync(_host, _port, new NbdClientOptions(), cancellationToken).ConfigureAwait(false));
            }
            var region = Math.Min(regionBytes, clients[0].Export.Size) / (ulong)workload.BlockSize * (ulong)workload.BlockSize;
            if (region == 0)
            {
                throw new InvalidOperationException($"the export ({clients[0].Export.Size} bytes) is smaller than one {workload.BlockSize}-byte request");
            }

            var workers = new List<Worker>();
            var tasks = new List<Task>();
            var stopwatch = Stopwatch.StartNew();
            var deadline = Stopwatch.GetTimestamp() + (long)(duration.TotalSeconds * Stopwatch.Frequency);
            foreach (var client in clients)
            {
                var connection = new ConnectionState(client);
                for (var q = 0; q < workload.QueueDepth; q++)
                {
                    var worker = new Worker(connection, workload, region, seed: workers.Count + 1);
                    workers.Add(worker);
                    tasks.Add(worker.RunAsync(deadline, cancellationToken));
                }
            }
            var all = Task.WhenAll(tasks);
            while (!all.IsCompleted)
            {
                await Task.WhenAny(all, Task.Delay(200, CancellationToken.None)).ConfigureAwait(false);
                progress?.Report(Math.Min(1.0, stopwatch.Elapsed.TotalSeconds / duration.TotalSeconds));
            }
            await all.ConfigureAwait(false);
            var seconds = stopwatch.Elapsed.TotalSeconds;

            var latency = new BenchLatencyHistogram();
            long reads = 0, writes = 0, flushes = 0, bytes = 0;
            foreach (var worker in workers)
            {
                latency.Add(worker.Latency);
                reads += worker.Reads;
                writes += worker.Writes;
                flushes += worker.Flushes;
                bytes += (worker.Reads + worker.Writes) * workload.BlockSize;
            }
            foreach (var client in clients)
            {
                await client.DisconnectAsync(cancellationToken).ConfigureAwait(false);
            }
            return new BenchLoadResult(reads, writes, flushes, bytes, seconds, latency);
        }
        finally
        {
            foreach (var client in clients)
            {
                await client.DisposeAsync().ConfigureAwait(false);
            }
        }
    }

    private static byte[] NewPayload(int length, int seed)
    {
        // Pinned and filled with non-zero random bytes, so no layer can shortcut them as zeroes.
        var buffer = GC.AllocateUninitializedArray<byte>(length, pinned: true);
        new Random(seed).NextBytes(buffer);
        for (var i = 0; i < buffer.Length; i += 512)
        {
            buffer[i] |= 1;
        }
        return buffer;
    }

    /// <summary>Per-connection state shared by its workers: the sequential cursor and the write count for flushes.</summary>
    private sealed class ConnectionState(NbdClient client)
    {
        public NbdClient Client { get; } = client;
        public long SequentialCursor;
        public long WritesIssued;
    }

    private sealed class Worker
    {
        private readonly ConnectionState _connection;
        private readonly BenchWorkload _workload;
        private readonly ulong _region;
        private readonly Random _random;
        private readonly byte[] _buffer;

        public Worker(ConnectionState connection, BenchWorkload workload, ulong region, int seed)
        {
            _connection = connection;
            _workload = workload;
            _region = region;
            _random = new Random(seed);
            _buffer = NewPayload(workload.BlockSize, seed);
        }

        public BenchLatencyHistogram Latency { get; } = new();
        public long Reads { get; private set; }
        public long Writes { get; private set; }
        public long Flushes { get; private set; }

        public async Task RunAsync(long deadline, CancellationToken cancellationToken)
        {
            var blockSize = (ulong)_workload.BlockSize;
            var blocks = _region / blockSize;
            var client = _connection.Client;
            while (Stopwatch.GetTimestamp() < deadline)
            {
                cancellationToken.ThrowIfCancellationRequested();
                ulong offset;
                if (_workload.Sequential)
                {
                    var index = (ulong)(Interlocked.Increment(ref _connection.SequentialCursor) - 1);
                    offset = index % blocks * blockSize;
                }
                else
                {
                    offset = (ulong)_random.NextInt64((long)blocks) * blockSize;
                }
                var isRead = _workload.ReadPercent >= 100 || (_workload.ReadPercent > 0 && _random.Next(100) < _workload.ReadPercent);
                var start = Stopwatch.GetTimestamp();
                if (isRead)
                {
                    await client.ReadAsync(offset, _buffer, cancellationToken: cancellationToken).ConfigureAwait(false);
                    Reads++;
                }
                else
                {
                    await client.WriteAsync(offset, _buffer, cancellationToken: cancellationToken).ConfigureAwait(false);
                    Writes++;
                }
                Latency.Record((long)((Stopwatch.GetTimestamp() - start) * (1e9 / Stopwatch.Frequency)));
                if (!isRead && _workload.FlushEveryWrites > 0
                    && Interlocked.Increment(ref _connection.WritesIssued) % _workload.FlushEveryWrites == 0)
                {
                    await client.FlushAsync(cancellationToken).ConfigureAwait(false);
                    Flushes++;
                }
            }
        }
    }
}
