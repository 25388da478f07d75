using System.Buffers;
using System.Collections.Concurrent;
using System.IO.Pipelines;
using System.Runtime.CompilerServices;
using System.Text;
using NbdQcow.Config;
using NbdQcow.Image;
using NbdQcow.Protocol;
using NbdQcow.Server.Exports;

namespace NbdQcow.Server.Nbd;

/// <summary>Fixed newstyle negotiation: options until EXPORT_NAME or GO picks an export.</summary>
public sealed partial class NbdSession
{
    private async Task<NbdExport?> NegotiateAsync(CancellationToken cancellationToken)
    {
        NbdServerMessageWriter.WriteGreeting(_output, NbdHandshakeFlags.FixedNewstyle | NbdHandshakeFlags.NoZeroes);
        await _output.FlushAsync(cancellationToken).ConfigureAwait(false);

        var clientFlags = await ReadClientFlagsAsync(cancellationToken).ConfigureAwait(false);
        if (clientFlags is null)
        {
            return null;
        }
        if ((clientFlags.Value & ~(NbdClientFlags.FixedNewstyle | NbdClientFlags.NoZeroes)) != 0)
        {
            _log.Debug($"{_peer}: unknown client flags {clientFlags.Value}; closing");
            return null;
        }
        _noZeroes = (clientFlags.Value & NbdClientFlags.NoZeroes) != 0;
        // Without NBD_FLAG_C_FIXED_NEWSTYLE the client speaks the original newstyle: it understands no option
        // replies, so NBD_OPT_EXPORT_NAME is the only option it may send, and TLS (which needs option replies)
        // is impossible. As qemu-nbd: serve EXPORT_NAME, close on anything else.
        var fixedNewstyle = (clientFlags.Value & NbdClientFlags.FixedNewstyle) != 0;
        if (!fixedNewstyle && _options.Tls is { Mode: TlsMode.Require })
        {
            _log.Debug($"{_peer}: client without fixed newstyle cannot start TLS, which is required; closing");
            return null;
        }

        while (true)
        {
            var header = await ReadOptionHeaderAsync(cancellationToken).ConfigureAwait(false);
            if (header is null)
            {
                return null;
            }
            var option = header.Value.Option;
            if (!fixedNewstyle && option != NbdOption.ExportName)
            {
                _log.Debug($"{_peer}: option {(uint)option} from a client without fixed newstyle (only NBD_OPT_EXPORT_NAME is allowed); closing");
                return null;
            }
            if (header.Value.Length > NbdLimits.MaxOptionPayload)
            {
                if (!fixedNewstyle)
                {
                    return null; // no option reply can tell this client why
                }
                if (!await SkipAsync(header.Value.Length, cancellationToken).ConfigureAwait(false))
                {
                    return null;
                }
                await OptionErrorAsync(option, NbdOptionReplyType.ErrTooBig, "option payload too large", cancellationToken).ConfigureAwait(false);
                continue;
            }
            var payload = new byte[header.Value.Length];
            if (!await ReadIntoAsync(payload, cancellationToken).ConfigureAwait(false))
            {
                return null;
            }
            if (IsRefusedBeforeTls(option))
            {
                if (option == NbdOption.ExportName)
                {
                    // EXPORT_NAME cannot be answered with an error: the spec says terminate.
                    _log.Debug($"{_peer}: NBD_OPT_EXPORT_NAME before STARTTLS while TLS is required; closing");
                    return null;
                }
                await OptionErrorAsync(option, NbdOptionReplyType.ErrTlsRequired, "TLS is required: send NBD_OPT_STARTTLS first", cancellationToken).ConfigureAwait(false);
                continue;
            }
            switch (option)
            {
                case NbdOption.ExportName:
                    {
                        var name = Encoding.UTF8.GetString(payload);
                        if (!_registry.TryGet(name, out var export))
                        {
                            // No way to report an error to EXPORT_NAME: the spec says close.
                            _log.Debug($"{_peer}: NBD_OPT_EXPORT_NAME for unknown export '{name}'; closing");
                            return null;
                        }
                        IsNegotiating = false; // before the reply: once the client has it, it is being served
                        NbdServerMessageWriter.WriteExportNameReply(_output, (ulong)export.Size, export.TransmissionFlags(_style != NbdReplyStyle.Simple), _noZeroes);
                        await _output.FlushAsync(cancellationToken).ConfigureAwait(false);
                        PrepareTransmissionFor(export);
                        return export;
                    }
                case NbdOption.Abort:
                    NbdServerMessageWriter.WriteOptionAck(_output, option);
                    await _output.FlushAsync(cancellationToken).ConfigureAwait(false);
                    return null;
                case NbdOption.List:
                    if (payload.Length != 0)
                    {
                        await OptionErrorAsync(option, NbdOptionReplyType.ErrInvalid, "NBD_OPT_LIST takes no data", cancellationToken).ConfigureAwait(false);
                        break;
                    }
                    foreach (var export in _registry.Exports)
                    {
                        NbdServerMessageWriter.WriteServerReply(_output, export.Name, export.Description);
                    }
                    NbdServerMessageWriter.WriteOptionAck(_output, option);
                    await _output.FlushAsync(cancellationToken).ConfigureAwait(false);
                    break;
                case NbdOption.Info:
                case NbdOption.Go:
                    {
                        var export = await AnswerInfoAsync(option, payload, cancellationToken).ConfigureAwait(false);
                        if (export is not null && option == NbdOption.Go)
                        {
                            PrepareTransmissionFor(export);
                            return export;
                        }
                        break;
                    }
                case NbdOption.StructuredReply:
                    if (payload.Length != 0)
                    {
                        await OptionErrorAsync(option, NbdOptionReplyType.ErrInvalid, "NBD_OPT_STRUCTURED_REPLY takes no data", cancellationToken).ConfigureAwait(false);
                    }
                    else if (_style == NbdReplyStyle.Extended)
                    {
                        await OptionErrorAsync(option, NbdOptionReplyType.ErrExtendedHeaderRequired, "extended headers already negotiated", cancellationToken).ConfigureAwait(false);
                    }
                    else if (_style == NbdReplyStyle.Structured)
                    {
                        await OptionErrorAsync(option, NbdOptionReplyType.ErrInvalid, "structured replies already negotiated", cancellationToken).ConfigureAwait(false);
                    }
                    else
                    {
                        _style = NbdReplyStyle.Structured;
                        NbdServerMessageWriter.WriteOptionAck(_output, option);
                        await _output.FlushAsync(cancellationToken).ConfigureAwait(false);
                    }
                    break;
                case NbdOption.ExtendedHeaders:
                    if (payload.Length != 0)
                    {
                        await OptionErrorAsync(option, NbdOptionReplyType.ErrInvalid, "NBD_OPT_EXTENDED_HEADERS takes no data", cancellationToken).ConfigureAwait(false);
                    }
                    else if (_style == NbdReplyStyle.Extended)
                    {
                        await OptionErrorAsync(option, NbdOptionReplyType.ErrInvalid, "extended headers already negotiated", cancellationToken).ConfigureAwait(false);
                    }
                    else
                    {
                        _style = NbdReplyStyle.Extended;
                        NbdServerMessageWriter.WriteOptionAck(_output, option);
                        await _output.FlushAsync(cancellationToken).ConfigureAwait(false);
                    }
                    break;
                case NbdOption.ListMetaContext:
                case NbdOption.SetMetaContext:
                    await AnswerMetaContextAsync(option, payload, cancellationToken).ConfigureAwait(false);
                    break;
                case NbdOption.StartTls:
                    if (!await AnswerStartTlsAsync(payload, cancellationToken).ConfigureAwait(false))
                    {
                        return null;
                    }
                    break;
                default:
                    await OptionErrorAsync(option, NbdOptionReplyType.ErrUnsupported, $"option {(uint)option} is not supported", cancellationToken).ConfigureAwait(false);
                    break;
            }
        }
    }

    private void PrepareTransmissionFor(NbdExport export)
    {
        // Fixes the header style for transmission; meta contexts chosen for another export do not carry over.
        _baseAllocation = _baseAllocation && ReferenceEquals(_metaContextExport, export) && _style != NbdReplyStyle.Simple;
        KeepQemuMetaContextsFor(export);
        _extended = _style == NbdReplyStyle.Extended;
    }

    private async Task<NbdExport?> AnswerInfoAsync(NbdOption option, byte[] payload, CancellationToken cancellationToken)
    {
        if (NbdOptionPayloadParser.TryParseInfoRequest(payload, out var request) != NbdParseStatus.Complete)
        {
            await OptionErrorAsync(option, NbdOptionReplyType.ErrInvalid, "malformed NBD_OPT_INFO/GO payload", cancellationToken).ConfigureAwait(false);
            return null;
        }
        if (!_registry.TryGet(request!.ExportName, out var export))
        {
            await OptionErrorAsync(option, NbdOptionReplyType.ErrUnknown, $"unknown export '{request.ExportName}'", cancellationToken).ConfigureAwait(false);
            return null;
        }
        NbdServerMessageWriter.WriteInfoExport(_output, option, (ulong)export.Size, export.TransmissionFlags(_style != NbdReplyStyle.Simple));
        var wantsName = false;
        var wantsDescription = false;
        foreach (var item in request.Requests)
        {
            wantsName |= item == NbdInfoType.Name;
            wantsDescription |= item == NbdInfoType.Description;
        }
        if (wantsName)
        {
            NbdServerMessageWriter.WriteInfoString(_output, option, NbdInfoType.Name, export.Name);
        }
        if (wantsDescription && export.Description is { Length: > 0 } description)
        {
            NbdServerMessageWriter.WriteInfoString(_output, option, NbdInfoType.Description, description);
        }
        // Always sent: min 1 means any alignment is accepted, so a client that did not ask loses nothing.
        var sizes = export.BlockSizes;
        NbdServerMessageWriter.WriteInfoBlockSize(_output, option, sizes.Minimum, sizes.Preferred, sizes.Maximum);
        if (option == NbdOption.Go)
        {
            IsNegotiating = false; // before the ACK: once the client has it, it is being served
        }
        NbdServerMessageWriter.WriteOptionAck(_output, option);
        await _output.FlushAsync(cancellationToken).ConfigureAwait(false);
        return export;
    }

    private async Task AnswerMetaContextAsync(NbdOption option, byte[] payload, CancellationToken cancellationToken)
    {
        if (_style == NbdReplyStyle.Simple)
        {
            await OptionErrorAsync(option, NbdOptionReplyType.ErrInvalid, "negotiate structured replies before meta contexts", cancellationToken).ConfigureAwait(false);
            return;
        }
        if (NbdOptionPayloadParser.TryParseMetaContextRequest(payload, out var request) != NbdParseStatus.Complete)
        {
            await OptionErrorAsync(option, NbdOptionReplyType.ErrInvalid, "malformed meta context payload", cancellationToken).ConfigureAwait(false);
            return;
        }
        if (!_registry.TryGet(request!.ExportName, out var export))
        {
            await OptionErrorAsync(option, NbdOptionReplyType.ErrUnknown, $"unknown export '{request.ExportName}'", cancellationToken).ConfigureAwait(false);
            return;
        }
        var matched = false;
        if (option == NbdOption.ListMetaContext)
        {
            matched = request.Queries.Count == 0;
            foreach (var query in request.Queries)
            {
                matched |= query is "base:" or NbdLimits.BaseAllocation;
            }
            if (matched)
            {
                NbdServerMessageWriter.WriteMetaContextReply(_output, option, 0, NbdLimits.BaseAllocation);
            }
            ListQemuMetaContexts(option, export, request.Queries);
        }
        else
        {
            foreach (var query in request.Queries)
            {
                matched |= query == NbdLimits.BaseAllocation;
            }
            _baseAllocation = matched;
            _metaContextExport = export;
            if (matched)
            {
                NbdServerMessageWriter.WriteMetaContextReply(_output, option, NbdLimits.BaseAllocationContextId, NbdLimits.BaseAllocation);
            }
            SetQemuMetaContexts(option, export, request.Queries);
        }
        NbdServerMessageWriter.WriteOptionAck(_output, option);
        await _output.FlushAsync(cancellationToken).ConfigureAwait(false);
    }

    private async Task OptionErrorAsync(NbdOption option, NbdOptionReplyType error, string message, CancellationToken cancellationToken)
    {
        NbdServerMessageWriter.WriteOptionError(_output, option, error, message);
        await _output.FlushAsync(cancellationToken).ConfigureAwait(false);
    }

    private async Task<NbdClientFlags?> ReadClientFlagsAsync(CancellationToken cancellationToken)
    {
        while (true)
        {
            var result = await _input.ReadAsync(cancellationToken).ConfigureAwait(false);
            var buffer = result.Buffer;
            if (NbdServerMessageParser.TryParseClientFlags(buffer, out var flags, out var consumed) == NbdParseStatus.Complete)
            {
                _input.AdvanceTo(consumed);
                return flags;
            }
            _input.AdvanceTo(buffer.Start, buffer.End);
            if (result.IsCompleted || result.IsCanceled)
            {
                return null;
            }
        }
    }

    private async Task<NbdOptionHeader?> ReadOptionHeaderAsync(CancellationToken cancellationToken)
    {
        while (true)
        {
            var result = await _input.ReadAsync(cancellationToken).ConfigureAwait(false);
            var buffer = result.Buffer;
            var status = NbdServerMessageParser.TryParseOptionHeader(buffer, out var header, out var consumed);
            if (status == NbdParseStatus.Complete)
            {
                _input.AdvanceTo(consumed);
                return header;
            }
            if (status == NbdParseStatus.BadMagic)
            {
                _input.AdvanceTo(buffer.Start);
                _log.Debug($"{_peer}: bad option magic; closing");
                return null;
            }
            _input.AdvanceTo(buffer.Start, buffer.End);
            if (result.IsCompleted || result.IsCanceled)
            {
                return null;
            }
        }
    }

}
