namespace NbdQcow.Protocol;

/// <summary>Payload of NBD_OPT_LIST_META_CONTEXT / NBD_OPT_SET_META_CONTEXT.</summary>
public sealed record NbdMetaContextRequest(string ExportName, IReadOnlyList<string> Queries);
