namespace NbdQcow.Protocol;

/// <summary>Header of one client option: IHAVEOPT, option type, payload length (the payload follows).</summary>
public readonly record struct NbdOptionHeader(NbdOption Option, uint Length);
