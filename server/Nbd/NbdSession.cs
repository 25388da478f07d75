using System.Buffers;
using System.Collections.Concurrent;
using System.IO.Pipelines;
using System.Runtime.CompilerServices;
using System.Text;
using NbdQcow.Image;
using NbdQcow.Protocol;
using NbdQcow.Server.Exports;

namespace NbdQcow.Server.Nbd;

/// <summary>
/// One client connection: fixed newstyle negotiation, then the transmission phase. The receive loop decodes
/// requests, reads WRITE payloads into pooled buffers and dispatches each request to the thread pool without
/// awaiting it; replies are written whole under a lock, so out-of-order replies never interleave.
/// </summary>
public sealed partial class NbdSession
{
    /// <summary>Reads of at least this many zero bytes go out as OFFSET_HOLE chunks (when DF allows).</summary>
    private const int HoleReplyThreshold = 4096;

    /// <summary>Bound on descriptors in one BLOCK_STATUS reply.</summary>
    private const int MaxExtentsPerReply = 4096;

    /// <summary>Beyond this an oversized WRITE payload is not worth skipping: the connection is closed instead.</summary>
    private const ulong MaxSkippablePayload = uint.MaxValue;

    // Not readonly: NBD_OPT_STARTTLS swaps them for pipes over TLS (NbdSession.Tls.cs).
    private PipeReader _input;
    private PipeWriter _output;
    private readonly ExportRegistry _registry;
    private readonly NbdSessionOptions _options;
    private readonly ServerLog _log;
    private readonly string _peer;
    private readonly SemaphoreSlim _sendLock = new(1, 1);
    private readonly SemaphoreSlim _slots;
    private readonly SemaphoreSlim _largeSlots;
    private readonly ConcurrentQueue<RequestWork> _workPool = new();
    private readonly BufferBudget _budget;
    private readonly BufferAccount _account = new();

    /// <summary>
    /// Cancelled when the receive loop ends other than by the server stopping: what the device holds for this
    /// client (an error policy waiting for the storage) is given up.
    /// </summary>
    private readonly CancellationTokenSource _clientGone = new(); // no timer: nothing to dispose

    /// <summary>
    /// The transport saw the client close or reset the connection. A request running inline holds the receive loop,
    /// so the server's periodic check, not the loop, is what notices; held requests are given up.
    /// </summary>
    public void NoteClientGone()
    {
        if (!_clientGone.IsCancellationRequested)
        {
            _clientGone.Cancel();
        }
    }

    private bool _noZeroes;
    private NbdReplyStyle _style = NbdReplyStyle.Simple;
    private bool _extended;
    private NbdExport? _metaContextExport;
    private NbdExport _export = null!;
    private bool _baseAllocation;

    /// <summary>The receive buffer held more bytes after the last request (or payload) taken from it.</summary>
    private bool _inputHasMore;

    /// <summary>
    /// Lends payload buffers to the receive pipe (<see cref="ReceiveLanding"/>); null when the transport's pipe does
    /// not take its segments from it, and from STARTTLS on (the socket then carries ciphertext).
    /// </summary>
    private ReceiveLanding? _landing;

    /// <summary>The last payload <see cref="ReadIntoAsync"/> read had part of its buffer lent to the receive pipe.</summary>
    private bool _payloadLent;

    public NbdSession(IDuplexPipe transport, ExportRegistry registry, NbdSessionOptions options, ServerLog log, string peer,
        ReceiveLanding? landing = null)
    {
        _landing = landing;
        _input = transport.Input;
        _output = transport.Output;
        _registry = registry;
        _options = options;
        _log = log;
        _peer = peer;
        _slots = new SemaphoreSlim(options.MaxInFlight, options.MaxInFlight);
        _largeSlots = new SemaphoreSlim(options.MaxLargeInFlight, options.MaxLargeInFlight);
        _budget = options.Budget;
    }

    /// <summary>Payload bytes this connection holds of the server's buffer budget.</summary>
    public long BufferedBytes => _account.Held;

    /// <summary>WRITE payload bytes received so far (progress of a client that sends what it announced).</summary>
    public long PayloadBytesReceived => Volatile.Read(ref _payloadBytesReceived);

    /// <summary>The receive loop holds budget for a WRITE payload that has not fully arrived: the client is what it waits for.</summary>
    public bool IsAwaitingPayload => Volatile.Read(ref _awaitingPayload);

    /// <summary>WRITE payload bytes the socket received straight into their payload buffer (no copy out of the pipe).</summary>
    public long PayloadBytesReceivedInPlace => Volatile.Read(ref _payloadBytesInPlace);

    private long _payloadBytesReceived;
    private long _payloadBytesInPlace;
    private bool _awaitingPayload;

    /// <summary>
    /// True until an export is chosen (cleared before the reply that tells the client so); the server may close a
    /// connection still negotiating to make room.
    /// </summary>
    public bool IsNegotiating { get => Volatile.Read(ref _negotiating); private set => Volatile.Write(ref _negotiating, value); }

    private bool _negotiating = true;

    /// <summary>
    /// Runs the connection to its end. <paramref name="stopping"/> ends negotiation at once and, in transmission,
    /// stops reading new requests; requests already dispatched are answered before this returns.
    /// <paramref name="negotiation"/> (which includes <paramref name="stopping"/>) ends negotiation only: the
    /// handshake timeout, or the server making room for a new connection.
    /// </summary>
    public async Task RunAsync(CancellationToken stopping, CancellationToken negotiation)
    {
        try
        {
            var export = await NegotiateAsync(negotiation).ConfigureAwait(false);
            if (export is null)
            {
                return;
            }
            _export = export;
            _log.Debug($"{_peer}: serving export '{export.Name}' ({_style} replies)");
            await TransmitAsync(stopping).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (stopping.IsCancellationRequested)
        {
        }
        catch (OperationCanceledException) when (negotiation.IsCancellationRequested)
        {
            _log.Debug($"{_peer}: negotiation not finished in time (or closed to make room); closing");
        }
        catch (Exception ex) when (ex is IOException or InvalidOperationException or ObjectDisposedException or System.Net.Sockets.SocketException)
        {
            _log.Debug($"{_peer}: connection ended: {ex.Message}");
        }
        finally
        {
            // Output first: the transport may tear the connection down once its input side is complete.
            await _output.CompleteAsync().ConfigureAwait(false);
            await _input.CompleteAsync().ConfigureAwait(false);
            await CloseTlsAsync().ConfigureAwait(false);
        }
    }
}
