using NbdQcow.Config;
using NbdQcow.Protocol;

namespace NbdQcow.Server.Nbd;

/// <summary>
/// NBD_OPT_STARTTLS: after the ACK the session's pipes are swapped for pipes over TLS; negotiation and
/// transmission keep reading <see cref="_input"/> and writing <see cref="_output"/> and never see the difference.
/// Plain connections never touch this code beyond one null check.
/// </summary>
public sealed partial class NbdSession
{
    private TlsTransport? _tls;

    /// <summary>FORCEDTLS: before STARTTLS only STARTTLS and ABORT are answered; everything else is refused.</summary>
    private bool IsRefusedBeforeTls(NbdOption option) =>
        _options.Tls is { Mode: TlsMode.Require } && _tls is null && option is not (NbdOption.StartTls or NbdOption.Abort);

    /// <returns>False when the connection must close (handshake failed, or the client broke the protocol).</returns>
    private async Task<bool> AnswerStartTlsAsync(byte[] payload, CancellationToken cancellationToken)
    {
        var upgrade = _options.Tls;
        if (upgrade is null)
        {
            await OptionErrorAsync(NbdOption.StartTls, NbdOptionReplyType.ErrUnsupported,
                "TLS is not enabled on this server (nbdqcow serve --tls on|require --tls-certificates DIR)", cancellationToken).ConfigureAwait(false);
            return true;
        }
        if (_tls is not null)
        {
            await OptionErrorAsync(NbdOption.StartTls, NbdOptionReplyType.ErrInvalid, "TLS is already active on this connection", cancellationToken).ConfigureAwait(false);
            return true;
        }
        if (payload.Length != 0)
        {
            await OptionErrorAsync(NbdOption.StartTls, NbdOptionReplyType.ErrInvalid, "NBD_OPT_STARTTLS takes no data", cancellationToken).ConfigureAwait(false);
            return true;
        }
        if (HasBufferedInput())
        {
            // The client must wait for our reply before its TLS handshake. Bytes already here were sent in plain
            // text after STARTTLS (an injection, or a broken client): never handshake over them or read them as options.
            _log.Warn($"{_peer}: data sent after NBD_OPT_STARTTLS before its reply; closing this connection");
            return false;
        }
        NbdServerMessageWriter.WriteOptionAck(_output, NbdOption.StartTls);
        await _output.FlushAsync(cancellationToken).ConfigureAwait(false);
        TlsTransport transport;
        try
        {
            transport = await upgrade.HandshakeAsync(_input, _output, cancellationToken).ConfigureAwait(false);
        }
        catch (TlsHandshakeException ex)
        {
            _log.Warn($"{_peer}: TLS handshake failed: {ex.Message}; closing this connection");
            return false;
        }
        _tls = transport;
        _landing = null;
        _input = transport.Input;
        _output = transport.Output;
        // The spec: nothing negotiated in plain text carries over into the TLS session.
        _style = NbdReplyStyle.Simple;
        _baseAllocation = false;
        ForgetQemuMetaContexts();
        _metaContextExport = null;
        _log.Debug($"{_peer}: TLS established ({transport.Description})");
        return true;
    }

    private bool HasBufferedInput()
    {
        if (!_input.TryRead(out var result))
        {
            return false;
        }
        var any = !result.Buffer.IsEmpty;
        _input.AdvanceTo(result.Buffer.Start);
        return any;
    }

    /// <summary>After the session completed its pipes: TLS close_notify, then the plain pipes underneath.</summary>
    private async Task CloseTlsAsync()
    {
        if (_tls is not null)
        {
            await _tls.DisposeAsync().ConfigureAwait(false);
        }
    }
}
