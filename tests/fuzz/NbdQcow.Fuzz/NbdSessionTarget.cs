using System.IO.Pipelines;
using NbdQcow.Image;
using NbdQcow.Image.Raw;
using NbdQcow.Server.Exports;
using NbdQcow.Server.Nbd;

namespace NbdQcow.Fuzz;

/// <summary>
/// The server's whole connection handling: the input is everything a client sends (client flags, options,
/// requests, write payloads), fed through an in-memory pipe to a real NbdSession serving a 1 MiB writable raw
/// export. A session must end by itself once its input ends; an exception escaping RunAsync, or a session still
/// running after its input ended, is a bug.
/// </summary>
public sealed class NbdSessionTarget : IFuzzTarget
{
    public const int ExportSize = 1 << 20;

    /// <summary>A session with no input left must be finished well within this.</summary>
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(5);

    public string Name => "session";

    public string Description => "a whole NbdSession (negotiation + transmission) fed the input as a client's bytes";

    public void Run(byte[] input) => RunAsync(input).GetAwaiter().GetResult();

    private static async Task RunAsync(byte[] input)
    {
        var file = new MemoryHostFile("/fuzz/disk.raw", new byte[ExportSize], readOnly: false);
        var device = new RawImage(file, new ImageOpenOptions { MaxDirtyAge = null });
        await using var registry = new ExportRegistry();
        registry.Add(new NbdExport("disk", device, description: "fuzz"));
        registry.Add(new NbdExport("ro", new RawImage(new MemoryHostFile("/fuzz/ro.raw", new byte[4096], readOnly: true),
            new ImageOpenOptions { ReadOnly = true, MaxDirtyAge = null }), readOnly: true));

        var toServer = new Pipe(new PipeOptions(pauseWriterThreshold: 0, useSynchronizationContext: false));
        var fromServer = new Pipe(new PipeOptions(pauseWriterThreshold: 0, useSynchronizationContext: false));
        var session = new NbdSession(new DuplexPipe(toServer.Reader, fromServer.Writer), registry,
            new NbdSessionOptions { MaxInFlight = 8, MaxLargeInFlight = 2 }, ServerLog.Quiet, "fuzz");
        using var stop = new CancellationTokenSource();
        var drain = DrainAsync(fromServer.Reader);
        var run = session.RunAsync(stop.Token, stop.Token);

        // Hand the bytes over in a few pieces, as a socket would, so messages straddle reads.
        int at = 0;
        int piece = Math.Max(1, input.Length / 3);
        while (at < input.Length)
        {
            int n = Math.Min(piece, input.Length - at);
            await toServer.Writer.WriteAsync(input.AsMemory(at, n)).ConfigureAwait(false);
            at += n;
        }
        await toServer.Writer.CompleteAsync().ConfigureAwait(false);

        if (await Task.WhenAny(run, Task.Delay(Deadline)).ConfigureAwait(false) != run)
            throw new TimeoutException($"session still running {Deadline.TotalSeconds} s after its input ended");
        await run.ConfigureAwait(false);
        await drain.ConfigureAwait(false);
    }

    private static async Task DrainAsync(PipeReader reader)
    {
        while (true)
        {
            var result = await reader.ReadAsync().ConfigureAwait(false);
            reader.AdvanceTo(result.Buffer.End);
            if (result.IsCompleted || result.IsCanceled) break;
        }
        await reader.CompleteAsync().ConfigureAwait(false);
    }

    private sealed class DuplexPipe(PipeReader input, PipeWriter output) : IDuplexPipe
    {
        public PipeReader Input { get; } = input;
        public PipeWriter Output { get; } = output;
    }
}
