namespace NbdQcow.Server.Nbd;

/// <summary>A client's TLS handshake failed; the message says why in words for the server log.</summary>
public sealed class TlsHandshakeException(string message, Exception inner) : Exception(message, inner);
