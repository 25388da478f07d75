namespace NbdQcow.Protocol.Client;

/// <summary>The server answered a request with an error.</summary>
public sealed class NbdException : IOException
{
    public NbdException(NbdErrno error, string message) : base(message) => Error = error;

    public NbdErrno Error { get; }
}
