namespace NbdQcow.Soak;

/// <summary>Operation counts for the report (updated with Interlocked from many loops).</summary>
public sealed class SoakCounters
{
    public long Reads;
    public long Writes;
    public long Zeroes;
    public long Trims;
    public long Flushes;
    public long BlocksVerified;
    public long Interrupted;
    public long ClientKills;
    public long Connections;
}
