namespace NbdQcow.Image.Qcow2.Recover;

/// <summary>The input cannot be recovered from at all, or the request is unusable (exit code 2); nothing was written.</summary>
public sealed class RecoveryInputException : Exception
{
    public RecoveryInputException(string message) : base(message) { }

    public RecoveryInputException(string message, Exception inner) : base(message, inner) { }
}
