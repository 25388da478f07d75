using NbdQcow.HostIo.IoUring;
using NbdQcow.HostIo.Native;

namespace NbdQcow.HostIo;

/// <summary>
/// The host-I/O engine of one export: the factory its files are opened with and the <see cref="HostIoBatch"/> its
/// sessions group bursts with. For io_uring one ring serves every file the factory opened (image, data file,
/// backing files); it is set up with the first file and torn down with the last. When the kernel refuses
/// io_uring the engine falls back to threads and says so once through the log callback; so it does when an
/// io_uring_enter fails hard later (the requests of that batch fail with EIO, the ring is abandoned, and its files
/// do their calls synchronously from then on).
/// </summary>
public sealed class HostIoEngine
{
    /// <summary>Set to 1 to make io_uring set-up fail as with ENOSYS (tests of the fallback).</summary>
    public const string SimulateNoIoUringVariable = "NBDQCOW_IO_URING_SIMULATE_ENOSYS";

    /// <summary>Set to 0 to send every io_uring completion to the thread pool (A/B measurements of the inline path).</summary>
    public const string InlineCompletionsVariable = "NBDQCOW_IO_URING_INLINE_COMPLETIONS";

    /// <summary>Set to N to make the Nth submitting io_uring_enter of a ring fail with ENOMEM (tests of the abandon path).</summary>
    public const string SimulateEnterFailureVariable = "NBDQCOW_IO_URING_SIMULATE_ENTER_FAILURE";

    private readonly object _lock = new();
    private readonly Action<string>? _log;
    private IoUringRing? _ring;
    private int _ringUsers;
    private volatile bool _fellBack;

    private HostIoEngine(AioEngine requested, Action<string>? log)
    {
        Requested = requested;
        _log = log;
        Factory = Open;
    }

    /// <summary>
    /// An engine of the <paramref name="requested"/> kind. io_uring is tried at once, so a refusal is logged at start
    /// and <see cref="Effective"/> is known before any file opens.
    /// </summary>
    public static HostIoEngine Create(AioEngine requested, Action<string>? log = null)
    {
        var engine = new HostIoEngine(requested, log);
        if (requested == AioEngine.IoUring)
        {
            if (engine.AcquireRing() is not null) engine.ReleaseRing();
        }
        return engine;
    }

    public AioEngine Requested { get; }

    /// <summary>The engine files are opened with: <see cref="Requested"/>, or threads after a refused io_uring.</summary>
    public AioEngine Effective => Requested == AioEngine.IoUring && !_fellBack ? AioEngine.IoUring : AioEngine.Threads;

    public HostIoBatch Batch { get; } = new();

    /// <summary>Opens files on this engine; matches <see cref="HostFileFactory"/>.</summary>
    public HostFileFactory Factory { get; }

    private IHostFile Open(string path, HostFileOptions options)
    {
        var file = HostFile.Open(path, options);
        if (Requested != AioEngine.IoUring) return file;
        var ring = AcquireRing();
        if (ring is null) return file;
        return new IoUringHostFile(file, ring, ReleaseRing);
    }

    private IoUringRing? AcquireRing()
    {
        lock (_lock)
        {
            if (_fellBack) return null;
            if (_ring is null)
            {
                var errno = LinuxFileCalls.ENOSYS;
                _ = int.TryParse(Environment.GetEnvironmentVariable(SimulateEnterFailureVariable), out var failEnterAt);
                var ring = Environment.GetEnvironmentVariable(SimulateNoIoUringVariable) == "1"
                    ? null
                    : IoUringRing.TrySetUp(Batch, out errno, OnRingBroken, failEnterAt,
                        inlineShortCompletions: Environment.GetEnvironmentVariable(InlineCompletionsVariable) != "0");
                if (ring is null)
                {
                    _fellBack = true;
                    _log?.Invoke($"io_uring unavailable ({LinuxFileCalls.Describe(errno)}); using --aio threads");
                    return null;
                }
                _ring = ring;
            }
            _ringUsers++;
            return _ring;
        }
    }

    private void OnRingBroken(int errno)
    {
        lock (_lock)
        {
            if (_fellBack) return;
            _fellBack = true;
        }
        _log?.Invoke($"io_uring_enter failed ({LinuxFileCalls.Describe(errno)}); the requests it held failed with EIO, " +
            "the ring is abandoned and this export uses --aio threads");
    }

    private void ReleaseRing()
    {
        IoUringRing? closing = null;
        lock (_lock)
        {
            if (--_ringUsers == 0)
            {
                closing = _ring;
                _ring = null;
            }
        }
        closing?.Dispose();
    }
}
