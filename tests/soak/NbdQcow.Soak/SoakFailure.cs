namespace NbdQcow.Soak;

/// <summary>A broken promise found by the soak (content, protocol, image check, resources): the run fails with this message.</summary>
public sealed class SoakFailure(string message) : Exception(message);
