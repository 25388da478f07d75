namespace NbdQcow.Server.Nbd;

/// <summary>One connection's share of the <see cref="BufferBudget"/>; changed only under the budget's lock.</summary>
internal sealed class BufferAccount
{
    public long Held;
}
