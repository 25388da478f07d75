namespace NbdQcow.Protocol.Client;

/// <summary>One export as NBD_OPT_LIST reports it.</summary>
public sealed record NbdExportListing(string Name, string Description);
