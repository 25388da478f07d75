using NbdQcow.Protocol;

namespace NbdQcow.Server.Nbd;

/// <summary>Why a request is answered with an error before it reaches the device; <see cref="None"/> when it may be dispatched.</summary>
/// <param name="Message">A constant text except for an unknown command (that error path formats its number).</param>
public readonly record struct RequestRefusal(NbdErrno Errno, string? Message)
{
    public static RequestRefusal None => default;

    public bool Refused => Message is not null;
}
