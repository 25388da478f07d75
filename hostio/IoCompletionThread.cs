namespace NbdQcow.HostIo;

/// <summary>
/// Whether the current thread completes host I/O for others (an io_uring reaper, which runs the short continuations
/// of reads and writes itself). Code that may block there for long — a synchronous fdatasync — moves to the thread
/// pool first, or every other completion of the export waits behind it.
/// </summary>
public static class IoCompletionThread
{
    [ThreadStatic]
    private static bool t_isCurrent;

    public static bool IsCurrent => t_isCurrent;

    internal static void MarkCurrent() => t_isCurrent = true;
}
