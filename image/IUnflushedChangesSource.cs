using NbdQcow.Cache;

namespace NbdQcow.Image;

/// <summary>A writable image that can say how much a power loss would cost now (for metrics).</summary>
public interface IUnflushedChangesSource
{
    /// <summary>Changes not yet durable; null when the device is read-only or not open for writing.</summary>
    UnflushedChanges? UnflushedChanges { get; }
}
