namespace NbdQcow.Tests.Crash.Oracle;

/// <summary>
/// An image format under crash test. Raw now; qcow2 plugs in with its own implementation (create with
/// `nbdqcow create`/the engine, consistency via `qemu-img check` and the project's own check).
/// </summary>
public interface ICrashImageFormat
{
    string Name { get; }

    /// <summary>Creates a fresh, durable image of <paramref name="virtualSize"/> bytes at <paramref name="path"/>.</summary>
    void Create(string path, long virtualSize);

    /// <summary>Checks a crashed image's metadata; null when consistent (leaks allowed), else what is corrupt.</summary>
    string? CheckConsistency(string path, long virtualSize);
}
