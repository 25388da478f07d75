namespace NbdQcow.Fuzz;

/// <summary>A memory file reached its size limit: the fuzz harness's ENOSPC, an expected outcome for a hostile image.</summary>
public sealed class MemoryFileFullException(string message) : IOException(message);
