namespace NbdQcow.Tests.Crash.Recording;

/// <summary>The ordered log of every write and barrier issued to the recorded files of one run. Thread-safe.</summary>
public sealed class HostFileLog
{
    private readonly object _gate = new();
    private readonly List<HostFileEvent> _events = [];
    private readonly List<RecordedFile> _files = [];
    private long _tick;

    /// <summary>The tick of the last issue or completion; a crash "at tick X" happens after X and before X+1.</summary>
    public long CurrentTick
    {
        get { lock (_gate) return _tick; }
    }

    public int AddFile(string path, byte[]? initialContent)
    {
        lock (_gate)
        {
            foreach (var file in _files)
                if (file.Path == path) return file.Id;
            var id = _files.Count;
            _files.Add(new RecordedFile(id, path, initialContent));
            return id;
        }
    }

    public HostFileEvent Issue(HostFileEventKind kind, int fileId, long offset, long length, byte[]? data = null)
    {
        var e = new HostFileEvent { Kind = kind, FileId = fileId, Offset = offset, Length = length, Data = data };
        lock (_gate)
        {
            e.IssueTick = ++_tick;
            _events.Add(e);
        }
        return e;
    }

    public void Complete(HostFileEvent e, bool succeeded)
    {
        lock (_gate)
        {
            e.Succeeded = succeeded;
            e.CompleteTick = ++_tick;
        }
    }

    /// <summary>Events in issue order.</summary>
    public IReadOnlyList<HostFileEvent> Events
    {
        get { lock (_gate) return _events.ToArray(); }
    }

    public IReadOnlyList<RecordedFile> Files
    {
        get { lock (_gate) return _files.ToArray(); }
    }

    /// <summary>True while some call has been issued but not completed.</summary>
    public bool HasCallsInFlight
    {
        get
        {
            lock (_gate)
            {
                for (var i = _events.Count - 1; i >= 0 && i >= _events.Count - 64; i--)
                    if (_events[i].CompleteTick == long.MaxValue) return true;
                return false;
            }
        }
    }

    /// <summary>Issue tick of the latest completed barrier on any file (0 when none).</summary>
    public long LastCompletedBarrierIssueTick
    {
        get
        {
            lock (_gate)
            {
                long latest = 0;
                foreach (var e in _events)
                    if (e.IsBarrier && e.Succeeded && e.CompleteTick != long.MaxValue && e.IssueTick > latest) latest = e.IssueTick;
                return latest;
            }
        }
    }

    /// <summary>Number of barriers issued after <paramref name="tick"/> that have completed.</summary>
    public int CompletedBarriersIssuedAfter(long tick)
    {
        lock (_gate)
        {
            var count = 0;
            for (var i = _events.Count - 1; i >= 0 && _events[i].IssueTick > tick; i--)
                if (_events[i].IsBarrier && _events[i].CompleteTick != long.MaxValue && _events[i].Succeeded) count++;
            return count;
        }
    }
}
