namespace NbdQcow.Server.Nbd;

/// <summary>A reply could not be written because the connection is gone; there is nobody left to answer.</summary>
internal sealed class ReplyNotSentException(string message, Exception? inner = null) : IOException(message, inner);
