namespace NbdQcow.Protocol.Client;

/// <summary>One reply to an option: its header and payload (an error message for error replies).</summary>
public sealed record NbdOptionReply(NbdOptionReplyHeader Header, byte[] Payload)
{
    public string Message => System.Text.Encoding.UTF8.GetString(Payload);
}
