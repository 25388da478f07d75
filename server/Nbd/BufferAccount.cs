namespace NbdQcow.Server.Nbd;

/// <summary>One connection's share of the <see cref="BufferBudget"/>; changed only under the budget's lock.</summary>
public sealed class BufferAccount
{
    /// <summary>Bytes this connection holds now.</summary>
    public long Held { get; internal set; }
}
