using System.Buffers;
using System.Collections.Concurrent;
using System.Diagnostics;
using System.IO.Pipelines;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text;
using NbdQcow.Image;
using NbdQcow.Protocol;
using NbdQcow.Server.Exports;

namespace NbdQcow.Server.Nbd;

/// <summary>Transmission: the receive loop, request execution on the thread pool, and whole-reply writes.</summary>
public sealed partial class NbdSession
{
    private async Task TransmitAsync(CancellationToken stopping)
    {
        bool disconnectRequested;
        using (stopping.Register(static state => ((PipeReader)state!).CancelPendingRead(), _input))
        {
            disconnectRequested = await ReceiveLoopAsync(stopping).ConfigureAwait(false);
        }
        // The client left without NBD_CMD_DISC (or was closed): requests an error policy holds stop waiting for the
        // storage and give their payload budget back now, not after the retry timeout. After a DISC, and on
        // shutdown, what is in flight may still finish.
        if (!disconnectRequested && !stopping.IsCancellationRequested)
        {
            NoteClientGone();
        }
        // Answer everything already dispatched before the connection closes: take every slot back.
        for (var i = 0; i < _options.MaxInFlight; i++)
        {
            await _slots.WaitAsync().ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Reads requests and dispatches them; returns true when the client ended with NBD_CMD_DISC. While more
    /// requests are already received (a burst), the export's <see cref="HostIoBatch"/> is open so their host I/O
    /// is submitted together; it is closed before every wait that may not finish at once, because what it holds
    /// might be what that wait needs.
    /// </summary>
    private async Task<bool> ReceiveLoopAsync(CancellationToken stopping)
    {
        var batch = new BurstBatch(_export.HostIoBatch);
        try
        {
            return await ReceiveRequestsAsync(stopping, batch).ConfigureAwait(false);
        }
        finally
        {
            batch.Close();
        }
    }

    private async Task<bool> ReceiveRequestsAsync(CancellationToken stopping, BurstBatch batch)
    {
        var threshold = (ulong)_options.LargeRequestThreshold;
        while (true)
        {
            var reading = ReadRequestAsync();
            if (!reading.IsCompleted) batch.Close();
            var (status, request) = await reading.ConfigureAwait(false);
            if (_inputHasMore) batch.Open();
            if (status != NbdParseStatus.Complete)
            {
                if (status == NbdParseStatus.BadMagic)
                {
                    _log.Warn($"{_peer}: bad request magic; closing this connection");
                }
                return false;
            }
            if (request.Command == NbdCommand.Disconnect)
            {
                _log.Debug($"{_peer}: disconnect requested");
                return true;
            }

            var large = request.Length > threshold && request.Command is NbdCommand.Read or NbdCommand.Write
                && request.Length <= NbdLimits.MaxPayload;
            if (large)
            {
                var slot = _largeSlots.WaitAsync();
                if (!slot.IsCompleted) batch.Close();
                await slot.ConfigureAwait(false);
            }
            // Payload memory comes out of the server-wide budget: wait here, reading nothing more, until it fits.
            var charge = request.Command is NbdCommand.Read or NbdCommand.Write && request.Length <= NbdLimits.MaxPayload
                ? BufferBudget.ChargeFor((long)request.Length) : 0;
            try
            {
                var acquiring = _budget.AcquireAsync(_account, charge, stopping);
                if (!acquiring.IsCompleted) batch.Close();
                await acquiring.ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                if (large)
                {
                    _largeSlots.Release();
                }
                return false;
            }
            PayloadBuffer payload = default;
            var oversized = false;
            if (request.Command == NbdCommand.Write && request.Length > 0)
            {
                if (request.Length > NbdLimits.MaxPayload)
                {
                    // Answer EINVAL without holding the payload in memory: read past it.
                    if (request.Length > MaxSkippablePayload)
                    {
                        _log.Warn($"{_peer}: WRITE of {request.Length} bytes; closing this connection");
                        return false;
                    }
                    batch.Close();
                    if (!await SkipAsync(request.Length, CancellationToken.None).ConfigureAwait(false))
                    {
                        if (large)
                        {
                            _largeSlots.Release();
                        }
                        return false;
                    }
                    oversized = true;
                }
                else
                {
                    payload = _budget.Buffers.Rent((int)request.Length);
                    bool received;
                    try
                    {
                        var receiving = ReadIntoAsync(payload.Memory((int)request.Length), CancellationToken.None);
                        if (!receiving.IsCompleted) batch.Close();
                        received = await receiving.ConfigureAwait(false);
                    }
                    catch
                    {
                        // A reset or aborted connection throws from the pipe instead of ending it: the buffer and the
                        // budget this request holds go back here, or they would be lost to every other client.
                        ReturnUnlessLent(payload);
                        _budget.Release(_account, charge);
                        if (large)
                        {
                            _largeSlots.Release();
                        }
                        throw;
                    }
                    if (!received)
                    {
                        ReturnUnlessLent(payload);
                        _budget.Release(_account, charge);
                        if (large)
                        {
                            _largeSlots.Release();
                        }
                        return false;
                    }
                }
            }

            // A lone READ or WRITE (nothing else in flight, no further request already received: the client waits
            // for this reply, as at queue depth 1) runs right here: handing it to another thread would only add a
            // wake-up to its latency. Anything else goes to the thread pool so requests overlap, and so does a
            // write that ends in an fdatasync (FUA, or a mode without a volatile cache): this thread also serves
            // other connections' socket events. With io_uring every WRITE starts here, that one too: its data write
            // and its fdatasync go through the ring, and what follows them runs where they complete.
            var plainWrite = request.Command == NbdCommand.Write && (request.Flags & NbdCommandFlags.Fua) == 0
                && (_export.Features & BlockDeviceFeatures.WriteThrough) == 0;
            var runInline = !_inputHasMore && _slots.CurrentCount == _options.MaxInFlight
                && (request.Command == NbdCommand.Read || plainWrite);
            var startWriteHere = !runInline && request.Command == NbdCommand.Write && !oversized && _export.StartsRequestsWhereReceived;
            var slotWait = _slots.WaitAsync();
            if (!slotWait.IsCompleted) batch.Close();
            await slotWait.ConfigureAwait(false);
            if (!_workPool.TryDequeue(out var work))
            {
                work = new RequestWork(this);
            }
            work.Request = request;
            work.Payload = payload;
            work.Oversized = oversized;
            work.HoldsLargeSlot = large;
            work.Charged = charge;
            if (runInline)
            {
                batch.Close();
                await RunAsync(work).ConfigureAwait(false);
                _workPool.Enqueue(work);
            }
            else if (request.Command == NbdCommand.Read && _export.StartsRequestsWhereReceived)
            {
                // With io_uring a READ runs here only until its host read is queued (into the open batch, so a burst
                // shares one io_uring_enter); its reply is sent where the read completes. A pool thread would add a
                // wake-up and a submission of its own per request. The loop does not wait for it.
                Start(work);
            }
            else if (startWriteHere)
            {
                // A plain WRITE likewise, but with the batch closed first: a write may end in a flush that waits,
                // synchronously, for reads whose submissions this loop's open batch would still hold.
                batch.Close();
                Start(work);
            }
            else
            {
                ThreadPool.UnsafeQueueUserWorkItem(work, preferLocal: false);
            }
        }
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<(NbdParseStatus Status, NbdRequest Request)> ReadRequestAsync()
    {
        while (true)
        {
            var result = await _input.ReadAsync().ConfigureAwait(false);
            if (result.IsCanceled)
            {
                return (NbdParseStatus.NeedMoreData, default);
            }
            var buffer = result.Buffer;
            var status = NbdServerMessageParser.TryParseRequest(buffer, _extended, out var request, out var consumed);
            if (status == NbdParseStatus.Complete)
            {
                _inputHasMore = !buffer.End.Equals(consumed);
                _input.AdvanceTo(consumed);
                return (status, request);
            }
            if (status == NbdParseStatus.BadMagic)
            {
                _input.AdvanceTo(buffer.Start);
                return (status, default);
            }
            _input.AdvanceTo(buffer.Start, buffer.End);
            if (result.IsCompleted)
            {
                if (!buffer.IsEmpty)
                {
                    _log.Debug($"{_peer}: client vanished mid-request");
                }
                return (NbdParseStatus.NeedMoreData, default);
            }
        }
    }

    /// <summary>
    /// Fills <paramref name="destination"/> with the next bytes as they arrive. On a plain connection, once the pipe
    /// is drained the rest of a large payload may be received straight into <paramref name="destination"/>
    /// (<see cref="ReceiveLanding"/>); those bytes are already in place and are not copied again.
    /// </summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<bool> ReadIntoAsync(Memory<byte> destination, CancellationToken cancellationToken)
    {
        var count = destination.Length;
        var copied = 0;
        var landing = _landing;
        Volatile.Write(ref _awaitingPayload, true);
        try
        {
            while (copied < count)
            {
                var result = await _input.ReadAsync(cancellationToken).ConfigureAwait(false);
                landing?.Disarm();
                if (result.IsCanceled)
                {
                    return false;
                }
                var buffer = result.Buffer;
                var take = (int)Math.Min(buffer.Length, count - copied);
                var inPlace = CopyUnlessInPlace(buffer.Slice(0, take), destination.Span.Slice(copied, take));
                if (inPlace > 0)
                {
                    Volatile.Write(ref _payloadBytesInPlace, _payloadBytesInPlace + inPlace);
                }
                copied += take;
                // Only this loop writes it; the server's trim loop reads it to see the payload make progress.
                Volatile.Write(ref _payloadBytesReceived, _payloadBytesReceived + take);
                _inputHasMore = buffer.Length > take;
                _input.AdvanceTo(buffer.GetPosition(take));
                if (copied < count && result.IsCompleted)
                {
                    return false;
                }
                if (copied < count && !_inputHasMore)
                {
                    landing?.TryArm(destination[copied..]);
                }
                else if (copied == count && !_inputHasMore && landing is { Lent: true })
                {
                    // A payload received in place ends exactly where its buffer does, so the pipe never holds the next
                    // request with it, as it does after a copied one: the socket says whether the client sent more.
                    _inputHasMore = landing.SocketHasData;
                }
            }
            return true;
        }
        finally
        {
            _payloadLent = landing is not null && landing.EndPayload();
            Volatile.Write(ref _awaitingPayload, false);
        }
    }

    /// <summary>
    /// Copies <paramref name="source"/> to <paramref name="destination"/>, skipping segments received in place;
    /// returns how many bytes were already there.
    /// </summary>
    private static int CopyUnlessInPlace(in ReadOnlySequence<byte> source, Span<byte> destination)
    {
        var at = 0;
        var inPlace = 0;
        foreach (var segment in source)
        {
            var span = segment.Span;
            var target = destination.Slice(at, span.Length);
            if (!Unsafe.AreSame(ref MemoryMarshal.GetReference(span), ref MemoryMarshal.GetReference(target)))
            {
                span.CopyTo(target);
            }
            else
            {
                inPlace += span.Length;
            }
            at += span.Length;
        }
        return inPlace;
    }

    /// <summary>
    /// Gives an abandoned payload's buffer back to the pool, unless part of it was lent to the receive pipe: the
    /// socket loop may still receive into that part, so the buffer is left to the garbage collector instead.
    /// </summary>
    private void ReturnUnlessLent(PayloadBuffer payload)
    {
        if (!_payloadLent)
        {
            _budget.Buffers.Return(payload);
        }
    }

    /// <summary>Discards the next <paramref name="count"/> bytes without buffering them.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<bool> SkipAsync(ulong count, CancellationToken cancellationToken)
    {
        while (count > 0)
        {
            var result = await _input.ReadAsync(cancellationToken).ConfigureAwait(false);
            if (result.IsCanceled)
            {
                return false;
            }
            var buffer = result.Buffer;
            var take = (long)Math.Min((ulong)buffer.Length, count);
            count -= (ulong)take;
            _input.AdvanceTo(buffer.GetPosition(take));
            if (count > 0 && result.IsCompleted)
            {
                return false;
            }
        }
        return true;
    }

    /// <summary>
    /// Starts one request where the caller is, without waiting for it: its pooled task is observed by the work item's
    /// cached continuation (no allocation), which returns the work item to the pool once the request is done.
    /// </summary>
    internal void Start(RequestWork work)
    {
        var running = RunAsync(work);
        if (running.IsCompleted)
        {
            Finish(running, work);
            return;
        }
        work.Running = running;
        running.ConfigureAwait(false).GetAwaiter().UnsafeOnCompleted(work.RunCompleted);
    }

    /// <summary>Takes the result of a request started by <see cref="Start"/> (its pooled box goes back) and recycles its work item.</summary>
    internal void Finish(ValueTask running, RequestWork work)
    {
        try
        {
            running.GetAwaiter().GetResult();
        }
        catch (Exception ex)
        {
            // RunAsync answers every error itself; anything here is a bug, and the request's reply was not sent.
            _log.Warn($"{_peer}: request failed without a reply: {ex}");
        }
        _workPool.Enqueue(work);
    }

    /// <summary>Runs one request and answers it; never throws. Its caller recycles <paramref name="work"/> afterwards.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask RunAsync(RequestWork work)
    {
        var started = Stopwatch.GetTimestamp();
        try
        {
            await ProcessAsync(work).ConfigureAwait(false);
            _export.Metrics?.RecordRequest(work.Request.Command, work.Request.Length, started);
        }
        catch (Exception ex)
        {
            // Only reply-sending failures get here (the connection is gone); device errors were answered.
            _log.Debug($"{_peer}: reply to {work.Request.Command} not sent: {ex.Message}");
        }
        finally
        {
            if (!work.Payload.IsEmpty)
            {
                _budget.Buffers.Return(work.Payload);
            }
            _budget.Release(_account, work.Charged);
            if (work.HoldsLargeSlot)
            {
                _largeSlots.Release();
            }
            work.Reset();
            _slots.Release();
        }
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask ProcessAsync(RequestWork work)
    {
        var request = work.Request;
        var export = _export;
        var device = export.Device;
        var cookie = request.Cookie;
        var offset = request.Offset;
        var length = request.Length;
        var errorAsChunk = NbdRequestValidator.ErrorAsChunk(request.Command);

        // Validated once, here; the dispatch below only calls the device.
        var refusal = NbdRequestValidator.Check(request, export, work.Oversized, AnyMetaContext);
        if (refusal.Refused)
        {
            await SendErrorAsync(cookie, offset, refusal.Errno, refusal.Message!, errorAsChunk).ConfigureAwait(false);
            return;
        }
        try
        {
            switch (request.Command)
            {
                case NbdCommand.Read:
                    if (length == 0)
                    {
                        break; // nothing to send: a plain success (a NONE chunk with extended headers)
                    }
                    await ReadAndReplyAsync(device, request).ConfigureAwait(false);
                    return;

                case NbdCommand.Write:
                    if (length > 0)
                    {
                        await device.WriteAsync((long)offset, work.Payload.Memory((int)length),
                            (request.Flags & NbdCommandFlags.Fua) != 0, _clientGone.Token).ConfigureAwait(false);
                    }
                    break;

                case NbdCommand.Flush:
                    await device.FlushAsync(_clientGone.Token).ConfigureAwait(false);
                    break;

                case NbdCommand.Trim:
                    if (length > 0 && (export.Features & BlockDeviceFeatures.Trim) != 0)
                    {
                        await device.TrimAsync((long)offset, (long)length, (request.Flags & NbdCommandFlags.Fua) != 0, _clientGone.Token).ConfigureAwait(false);
                    }
                    break;

                case NbdCommand.WriteZeroes:
                    if (length > 0)
                    {
                        await device.ZeroAsync((long)offset, (long)length, ZeroFlagsOf(request.Flags), _clientGone.Token).ConfigureAwait(false);
                    }
                    break;

                case NbdCommand.Cache:
                    if (length > 0)
                    {
                        await device.CacheAsync((long)offset, (long)length).ConfigureAwait(false);
                    }
                    break;

                case NbdCommand.BlockStatus:
                    await BlockStatusAndReplyAsync(work).ConfigureAwait(false);
                    return;
            }
        }
        catch (BlockDeviceException ex)
        {
            _log.Debug($"{_peer}: {request.Command} at {offset}+{length}: {ex.Error}: {ex.Message}");
            await SendErrorAsync(cookie, offset, NbdErrnoMapping.ToErrno(ex.Error), ex.Message, errorAsChunk).ConfigureAwait(false);
            return;
        }
        catch (Exception ex) when (ex is not (OperationCanceledException or ReplyNotSentException))
        {
            _log.Warn($"{_peer}: {request.Command} at {offset}+{length} failed: {ex}");
            await SendErrorAsync(cookie, offset, NbdErrno.Io, "internal error: " + ex.Message, errorAsChunk).ConfigureAwait(false);
            return;
        }
        await SendSuccessAsync(cookie, offset).ConfigureAwait(false);
    }

    private static ZeroFlags ZeroFlagsOf(NbdCommandFlags requestFlags)
    {
        var flags = ZeroFlags.None;
        if ((requestFlags & NbdCommandFlags.Fua) != 0) flags |= ZeroFlags.Fua;
        if ((requestFlags & NbdCommandFlags.NoHole) != 0) flags |= ZeroFlags.NoHole;
        if ((requestFlags & NbdCommandFlags.FastZero) != 0) flags |= ZeroFlags.FastZero;
        return flags;
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask ReadAndReplyAsync(IBlockDevice device, NbdRequest request)
    {
        var length = (int)request.Length;
        var buffer = _budget.Buffers.Rent(length);
        try
        {
            try
            {
                await device.ReadAsync((long)request.Offset, buffer.Memory(length), _clientGone.Token).ConfigureAwait(false);
            }
            catch (BlockDeviceException ex)
            {
                _log.Debug($"{_peer}: READ at {request.Offset}+{length}: {ex.Error}: {ex.Message}");
                await SendErrorAsync(request.Cookie, request.Offset, NbdErrnoMapping.ToErrno(ex.Error), ex.Message, true).ConfigureAwait(false);
                return;
            }
            var data = buffer.Memory(length);
            await _sendLock.WaitAsync().ConfigureAwait(false);
            try
            {
                if (_style == NbdReplyStyle.Simple)
                {
                    NbdServerMessageWriter.WriteSimpleReply(_output, NbdErrno.None, request.Cookie);
                    await WritePayloadAsync(data).ConfigureAwait(false);
                }
                else if (length >= HoleReplyThreshold && (request.Flags & NbdCommandFlags.DontFragment) == 0
                    && data.Span.IndexOfAnyExcept((byte)0) < 0)
                {
                    NbdServerMessageWriter.WriteOffsetHole(_output, _style, NbdReplyFlags.Done, request.Cookie, request.Offset, request.Offset, (uint)length);
                }
                else
                {
                    NbdServerMessageWriter.WriteOffsetDataHeader(_output, _style, NbdReplyFlags.Done, request.Cookie, request.Offset, request.Offset, length);
                    await WritePayloadAsync(data).ConfigureAwait(false);
                }
                await _output.FlushAsync().ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is not (ReplyNotSentException or OperationCanceledException))
            {
                // The pipe or socket is gone (the client left, or the server closed it while stopping).
                throw new ReplyNotSentException($"connection closed while sending a reply: {ex.Message}", ex);
            }
            finally
            {
                _sendLock.Release();
            }
        }
        finally
        {
            _budget.Buffers.Return(buffer);
        }
    }

    /// <summary>Largest piece of a READ reply copied into the send pipe before a flush.</summary>
    private const int ReplyChunk = 1024 * 1024;

    /// <summary>
    /// Copies a READ reply's data into the send pipe a piece at a time, flushing between pieces: a client that does
    /// not read its replies then holds at most the pipe's pause threshold in the pipe, plus the charged buffer.
    /// The caller holds the send lock and flushes the last piece.
    /// </summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask WritePayloadAsync(ReadOnlyMemory<byte> data)
    {
        while (data.Length > ReplyChunk)
        {
            _output.Write(data.Span[..ReplyChunk]);
            data = data[ReplyChunk..];
            var flushed = await _output.FlushAsync().ConfigureAwait(false);
            if (flushed.IsCompleted)
            {
                throw new ReplyNotSentException("connection closed while sending a reply");
            }
        }
        _output.Write(data.Span);
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask BlockStatusAndReplyAsync(RequestWork work)
    {
        var request = work.Request;
        var export = _export;
        var extents = work.Extents;
        if (_baseAllocation && (export.Features & BlockDeviceFeatures.BlockStatus) != 0)
        {
            await export.Device.GetBlockStatusAsync((long)request.Offset, (long)request.Length, extents).ConfigureAwait(false);
        }
        if (_baseAllocation && extents.Count == 0)
        {
            extents.Add(new BlockExtent((long)request.Length, BlockExtentFlags.Data));
        }
        await CollectQemuStatusAsync(work).ConfigureAwait(false);
        var maxExtents = (request.Flags & NbdCommandFlags.ReqOne) != 0 ? 1 : MaxExtentsPerReply;
        var count = CountDescriptors(extents, request.Length, maxExtents);

        await _sendLock.WaitAsync().ConfigureAwait(false);
        try
        {
            if (_baseAllocation)
            {
                var done = work.StatusChunks.Count == 0 ? NbdReplyFlags.Done : NbdReplyFlags.None;
                NbdServerMessageWriter.WriteBlockStatusHeader(_output, _style, done, request.Cookie, request.Offset,
                    NbdLimits.BaseAllocationContextId, count);
                var remaining = request.Length;
                var written = 0;
                for (var i = 0; i < extents.Count && written < count; i++)
                {
                    var extent = extents[i];
                    if (extent.Length <= 0)
                    {
                        continue;
                    }
                    var take = Math.Min((ulong)extent.Length, remaining);
                    NbdServerMessageWriter.WriteBlockDescriptor(_output, _style, take, (uint)extent.Flags);
                    remaining -= take;
                    written++;
                }
            }
            WriteQemuStatusChunks(work);
            await _output.FlushAsync().ConfigureAwait(false);
        }
        finally
        {
            _sendLock.Release();
        }
    }

    /// <summary>How many descriptors go out: non-empty extents, clipped to the request, at most <paramref name="max"/>.</summary>
    private static int CountDescriptors(List<BlockExtent> extents, ulong requested, int max)
    {
        var remaining = requested;
        var count = 0;
        for (var i = 0; i < extents.Count && count < max && remaining > 0; i++)
        {
            var length = extents[i].Length;
            if (length <= 0)
            {
                continue;
            }
            remaining -= Math.Min((ulong)length, remaining);
            count++;
        }
        return count;
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask SendSuccessAsync(ulong cookie, ulong offset)
    {
        await _sendLock.WaitAsync().ConfigureAwait(false);
        try
        {
            NbdServerMessageWriter.WriteSuccess(_output, _style, cookie, offset);
            await _output.FlushAsync().ConfigureAwait(false);
        }
        finally
        {
            _sendLock.Release();
        }
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask SendErrorAsync(ulong cookie, ulong offset, NbdErrno error, string message, bool asChunk)
    {
        _export.Metrics?.RecordError(error);
        await _sendLock.WaitAsync().ConfigureAwait(false);
        try
        {
            NbdServerMessageWriter.WriteError(_output, _style, cookie, offset, error, message, asChunk);
            await _output.FlushAsync().ConfigureAwait(false);
        }
        finally
        {
            _sendLock.Release();
        }
    }
}
