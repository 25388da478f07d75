namespace NbdQcow.Protocol;

/// <summary>Payload of NBD_OPT_INFO / NBD_OPT_GO: export name and the information items asked for.</summary>
public sealed record NbdInfoRequest(string ExportName, IReadOnlyList<NbdInfoType> Requests);
