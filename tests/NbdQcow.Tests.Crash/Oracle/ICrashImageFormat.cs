namespace NbdQcow.Tests.Crash.Oracle;

/// <summary>
/// An image format under crash test. Raw now; qcow2 plugs in with its own implementation (create with
/// `nbdqcow create`/the engine, consistency via `qemu-img check` and the project's own check).
/// </summary>
public interface ICrashImageFormat
{
    string Name { get; }

    /// <summary>
    /// Op id whose sector patterns the device shows before the workload (a backing file's content), or 0 when a
    /// fresh image reads as zeroes.
    /// </summary>
    int InitialOpId => 0;

    /// <summary>The secret every open of an encrypted image needs (the workload's and the oracle's), or null.</summary>
    byte[]? EncryptionKey => null;

    /// <summary>Creates a fresh, durable image of <paramref name="virtualSize"/> bytes at <paramref name="path"/>.</summary>
    void Create(string path, long virtualSize);

    /// <summary>
    /// What nbdqcow does when it opens a crashed image before anything else looks at it (qcow2: replay a pending
    /// metadata journal). Returns a problem (counted as corruption) or null.
    /// </summary>
    string? PrepareForCheck(string path) => null;

    /// <summary>Checks a crashed image's metadata: corruption (null when consistent) and leaked clusters (allowed).</summary>
    ConsistencyReport CheckConsistency(string path, long virtualSize);
}
