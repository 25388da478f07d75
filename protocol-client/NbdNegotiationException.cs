namespace NbdQcow.Protocol.Client;

/// <summary>The handshake failed: the server refused an option, or spoke something other than fixed newstyle NBD.</summary>
public sealed class NbdNegotiationException : IOException
{
    public NbdNegotiationException(string message, NbdOptionReplyType? reply = null) : base(message) => Reply = reply;

    /// <summary>The option error the server sent, when the failure was a refused option.</summary>
    public NbdOptionReplyType? Reply { get; }
}
