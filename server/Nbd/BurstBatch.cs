using NbdQcow.HostIo;

namespace NbdQcow.Server.Nbd;

/// <summary>
/// A receive loop's hold on its export's <see cref="HostIoBatch"/>: opened once per burst, closed at most once,
/// so the loop can close it before any wait without counting.
/// </summary>
internal sealed class BurstBatch(HostIoBatch? batch)
{
    private bool _open;

    public void Open()
    {
        if (_open || batch is null) return;
        batch.Open();
        _open = true;
    }

    public void Close()
    {
        if (!_open) return;
        _open = false;
        batch!.Close();
    }
}
