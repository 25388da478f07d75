namespace NbdQcow.Server.Cli;

/// <summary>How serve meets a service manager: a pid file to write once listening, and whether it hands over sockets.</summary>
internal sealed record ServiceOptions(string? PidFile, bool SocketActivated);
