using System.Runtime.CompilerServices;
using NbdQcow.Config;
using NbdQcow.Image;
using NbdQcow.Server.Nbd;
using Polly;
using Polly.CircuitBreaker;
using Polly.Retry;
using Polly.Timeout;

namespace NbdQcow.Server.Storage;

/// <summary>
/// An export's error policies (qemu's werror/rerror) over its block device. A request the policy holds gets no
/// reply until it succeeds or the policy gives up: it is retried as a whole NBD request (the image layer has
/// cleaned up the failed attempt: no half-done metadata, its allocation given back) through a Polly pipeline:
/// timeout (<see cref="ErrorRetryTimeout"/>) -> retry with exponential back-off -> for <c>stop</c> a circuit breaker
/// that, once the storage failed, holds every write and half-opens now and then to let one probe through.
/// A failed fdatasync is never retried: after it no flush can be trusted (the image refuses them until reopened).
/// With the <c>report</c> policies requests go straight to the device.
/// A request's cancellation token ends only its holding (the client left): every attempt runs to its end without
/// it, because the image must finish what it started (an acknowledged write still reaches the dirty-age flusher).
/// Held requests keep their payload buffer and its share of the server's budget: that is the bound, with the
/// retry timeout, and a client that leaves gives them back at once.
/// </summary>
public sealed partial class ErrorPolicyBlockDevice : IBlockDevice
{
    /// <summary>First back-off between attempts; doubles up to <see cref="MaxRetryDelay"/>.</summary>
    public static readonly TimeSpan FirstRetryDelay = TimeSpan.FromMilliseconds(20);
    public static readonly TimeSpan MaxRetryDelay = TimeSpan.FromMilliseconds(500);
    /// <summary>How long the <c>stop</c> breaker stays open before it lets one probe write through.</summary>
    public static readonly TimeSpan ProbeInterval = TimeSpan.FromMilliseconds(500);

    private readonly IBlockDevice _inner;
    private readonly string _exportName;
    private readonly ServerLog _log;
    private readonly ResiliencePipeline? _writePipeline;
    private readonly ResiliencePipeline? _readPipeline;
    private readonly HeldRequestTracker _writes;
    private readonly HeldRequestTracker _reads;
    private readonly TimeProvider _time;
    private string? _syncFailure;

    public ErrorPolicyBlockDevice(IBlockDevice inner, string exportName, WriteErrorPolicy writePolicy, ReadErrorPolicy readPolicy,
        TimeSpan errorRetryTimeout, ServerLog log, TimeProvider? timeProvider = null)
    {
        _inner = inner;
        _exportName = exportName;
        _log = log;
        _time = timeProvider ?? TimeProvider.System;
        WritePolicy = writePolicy;
        ReadPolicy = readPolicy;
        ErrorRetryTimeout = errorRetryTimeout;
        _writes = new HeldRequestTracker(exportName, "writes", log, _time);
        _reads = new HeldRequestTracker(exportName, "reads", log, _time);
        if (writePolicy != WriteErrorPolicy.Report) _writePipeline = BuildPipeline(IsHeldWriteError, writePolicy == WriteErrorPolicy.Stop);
        if (readPolicy != ReadErrorPolicy.Report) _readPipeline = BuildPipeline(IsHeldReadError, withBreaker: false);
    }

    public WriteErrorPolicy WritePolicy { get; }

    public ReadErrorPolicy ReadPolicy { get; }

    public TimeSpan ErrorRetryTimeout { get; }

    public IBlockDevice Inner => _inner;

    public long Size => _inner.Size;

    public BlockDeviceFeatures Features => _inner.Features;

    public BlockSizeHints BlockSizes => _inner.BlockSizes;

    /// <summary>What the control socket shows: "writes paused: ENOSPC ... since ...", a refused flush state, or "ok".</summary>
    public string StorageStatus
    {
        get
        {
            var parts = new List<string>(3);
            if (_writes.Status is { } writes) parts.Add(writes);
            if (_reads.Status is { } reads) parts.Add(reads);
            if (Volatile.Read(ref _syncFailure) is { } sync) parts.Add(sync);
            return parts.Count == 0 ? "ok" : string.Join("; ", parts);
        }
    }

    /// <summary>True while writes are held (the export has paused them).</summary>
    public bool WritesPaused => _writes.IsPaused;

    public ValueTask ReadAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken = default) =>
        _readPipeline is null
            ? _inner.ReadAsync(offset, buffer)
            : RunAsync(_readPipeline, _reads, ReadPolicy.ToString(), (offset, buffer),
                static (device, s, token) => device.ReadAsync(s.offset, s.buffer, token), alwaysHold: false, cancellationToken);

    public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, bool fua, CancellationToken cancellationToken = default) =>
        _writePipeline is null
            ? Observe(_inner.WriteAsync(offset, data, fua))
            : RunWriteAsync((offset, data, fua), static (device, s, token) => device.WriteAsync(s.offset, s.data, s.fua, token), cancellationToken);

    public ValueTask ZeroAsync(long offset, long length, ZeroFlags flags, CancellationToken cancellationToken = default) =>
        _writePipeline is null
            ? Observe(_inner.ZeroAsync(offset, length, flags))
            : RunWriteAsync((offset, length, flags), static (device, s, token) => device.ZeroAsync(s.offset, s.length, s.flags, token), cancellationToken);

    public ValueTask TrimAsync(long offset, long length, bool fua, CancellationToken cancellationToken = default) =>
        _writePipeline is null
            ? Observe(_inner.TrimAsync(offset, length, fua))
            : RunWriteAsync((offset, length, fua), static (device, s, token) => device.TrimAsync(s.offset, s.length, s.fua, token), cancellationToken);

    public ValueTask FlushAsync(CancellationToken cancellationToken = default)
    {
        if (Volatile.Read(ref _syncFailure) is not null) return FlushAfterSyncFailureAsync(cancellationToken);
        return _writePipeline is null
            ? Observe(_inner.FlushAsync())
            : RunWriteAsync(0, static (device, _, token) => device.FlushAsync(token), cancellationToken);
    }

    private async ValueTask FlushAfterSyncFailureAsync(CancellationToken cancellationToken)
    {
        if (_writePipeline is null) await Observe(_inner.FlushAsync()).ConfigureAwait(false);
        else await RunWriteAsync(0, static (device, _, token) => device.FlushAsync(token), cancellationToken).ConfigureAwait(false);
        // Only an image reopened since (a migration handover and back) flushes again after a failed fdatasync.
        if (Interlocked.Exchange(ref _syncFailure, null) is not null)
            _log.Warn($"export '{_exportName}': flushes succeed again: the image was reopened and checked");
    }

    public ValueTask CacheAsync(long offset, long length, CancellationToken cancellationToken = default) =>
        _inner.CacheAsync(offset, length, cancellationToken);

    public ValueTask GetBlockStatusAsync(long offset, long length, List<BlockExtent> extents, CancellationToken cancellationToken = default) =>
        _inner.GetBlockStatusAsync(offset, length, extents, cancellationToken);

    public ValueTask DisposeAsync() => _inner.DisposeAsync();

    private ValueTask RunWriteAsync<TState>(TState state, Func<IBlockDevice, TState, CancellationToken, ValueTask> operation, CancellationToken cancellationToken) =>
        // With stop, a write arriving while writes are paused waits behind the breaker instead of trying the storage.
        RunAsync(_writePipeline!, _writes, WritePolicy.ToString().ToLowerInvariant(), state, operation,
            alwaysHold: WritePolicy == WriteErrorPolicy.Stop && _writes.IsPaused, cancellationToken);

    /// <summary>Tries the request once directly (no allocation on success); holds it through the pipeline when the policy says so.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask RunAsync<TState>(ResiliencePipeline pipeline, HeldRequestTracker tracker, string policy, TState state,
        Func<IBlockDevice, TState, CancellationToken, ValueTask> operation, bool alwaysHold, CancellationToken cancellationToken)
    {
        BlockDeviceException? first = null;
        if (!alwaysHold)
        {
            try
            {
                await operation(_inner, state, CancellationToken.None).ConfigureAwait(false);
                return;
            }
            catch (BlockDeviceException e)
            {
                NoteFailure(e);
                if (!(ReferenceEquals(tracker, _reads) ? IsHeldReadError(e) : IsHeldWriteError(e))) throw;
                first = e;
            }
        }
        var attempt = new HeldAttempt<TState>(_inner, state, operation, first);
        tracker.Enter(first, policy, ErrorRetryTimeout);
        var succeeded = false;
        try
        {
            await pipeline.ExecuteAsync(static (held, _) => held.RunAsync(), attempt, cancellationToken).ConfigureAwait(false);
            succeeded = true;
        }
        catch (Exception e) when (e is TimeoutRejectedException or BrokenCircuitException)
        {
            // The policy gave up: the client gets the storage's error, not the policy's.
            throw attempt.LastError ?? new BlockDeviceException(BlockError.Io,
                $"export '{_exportName}': storage did not recover within {ErrorRetryTimeout.TotalMilliseconds:0} ms", e);
        }
        catch (BlockDeviceException e)
        {
            NoteFailure(e);
            throw;
        }
        finally
        {
            tracker.Exit(succeeded, attempt.LastError);
        }
    }

    /// <summary>The report policy: no retry, but a failed fdatasync is still logged once.</summary>
    private ValueTask Observe(ValueTask pending)
    {
        if (pending.IsCompletedSuccessfully)
        {
            pending.GetAwaiter().GetResult();
            return default;
        }
        return ObserveSlowAsync(pending);
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask ObserveSlowAsync(ValueTask pending)
    {
        try
        {
            await pending.ConfigureAwait(false);
        }
        catch (BlockDeviceException e)
        {
            NoteFailure(e);
            throw;
        }
    }

    private void NoteFailure(BlockDeviceException e)
    {
        if (!HostErrorNames.IsSyncFailure(e) || Volatile.Read(ref _syncFailure) is not null) return;
        var state = $"flushes refused since {_time.GetUtcNow():u}: fdatasync failed";
        if (Interlocked.CompareExchange(ref _syncFailure, state, null) is not null) return;
        _log.Warn($"export '{_exportName}': fdatasync failed ({e.Message}). The kernel may have dropped the writes it covered, " +
                  "so every FLUSH and FUA write now fails with EIO until the export is reopened; the image stays marked dirty " +
                  "and is checked when next opened");
    }

    private bool IsHeldWriteError(BlockDeviceException e) =>
        !HostErrorNames.IsSyncFailure(e) && HostErrorNames.IsHostError(e)
        && (WritePolicy != WriteErrorPolicy.Enospc || HostErrorNames.IsNoSpace(e));

    private static bool IsHeldReadError(BlockDeviceException e) => HostErrorNames.IsHostError(e);

    private ResiliencePipeline BuildPipeline(Func<BlockDeviceException, bool> held, bool withBreaker)
    {
        var builder = new ResiliencePipelineBuilder { TimeProvider = _time }
            .AddTimeout(new TimeoutStrategyOptions { Timeout = ErrorRetryTimeout })
            .AddRetry(new RetryStrategyOptions
            {
                ShouldHandle = new PredicateBuilder().Handle<BlockDeviceException>(held).Handle<BrokenCircuitException>(),
                BackoffType = DelayBackoffType.Exponential,
                Delay = FirstRetryDelay,
                MaxDelay = MaxRetryDelay,
                MaxRetryAttempts = int.MaxValue,
                UseJitter = true,
            });
        if (withBreaker)
        {
            builder.AddCircuitBreaker(new CircuitBreakerStrategyOptions
            {
                ShouldHandle = new PredicateBuilder().Handle<BlockDeviceException>(held),
                FailureRatio = 0.5,
                MinimumThroughput = 2,
                SamplingDuration = TimeSpan.FromSeconds(30),
                BreakDuration = ProbeInterval,
                OnOpened = args =>
                {
                    _log.Warn($"export '{_exportName}': writes stopped (policy stop): the storage fails; probing it every {ProbeInterval.TotalMilliseconds:0} ms");
                    return default;
                },
                OnHalfOpened = _ =>
                {
                    _log.Debug($"export '{_exportName}': probing the storage with one held write");
                    return default;
                },
                OnClosed = _ =>
                {
                    _log.Warn($"export '{_exportName}': a probe write succeeded; writes taken again");
                    return default;
                },
            });
        }
        return builder.Build();
    }
}
