namespace NbdQcow.Image.Qcow2.Recover;

/// <summary>
/// What became of one guest range: "in-place" (written to the output from the named evidence), "lost+found" (saved
/// beside the output, not placed) or "lost" (unreadable). Narrower entries override a wider in-place range they lie in.
/// </summary>
public sealed record RecoveredRange(long GuestOffset, long Length, string Outcome, string Evidence);
