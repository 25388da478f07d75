namespace NbdQcow.Soak;

/// <summary>The server's VmRSS and open descriptors, taken with no request in flight, <see cref="Seconds"/> into its life.</summary>
public readonly record struct ResourceSample(double Seconds, long RssKiB, int Fds);
