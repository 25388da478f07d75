using NbdQcow.Cache;
using NbdQcow.HostIo;
using NbdQcow.Image;
using NbdQcow.Tests.Faults;

namespace NbdQcow.Tests.Unit.Faults;

/// <summary>
/// A scripted workload over one block device that touches every write, allocation and flush path (allocating
/// writes across L2 tables and refcount blocks, in-place overwrites, copy-on-write of a partial cluster, zero,
/// trim, FUA, flush), and an oracle of what must read back: the content of every range whose last change was
/// acknowledged and then made durable (FLUSH, FUA, or a write-through mode), and not touched since by a failed
/// request. A failed request is retried once, as an error policy would; a retry that succeeds counts as the write.
/// </summary>
internal sealed class FaultSweepWorkload(CacheMode mode)
{
    private const int Region = 2048;
    private readonly Dictionary<long, RangeState> _ranges = [];

    /// <summary>Requests that failed (before their retry).</summary>
    public int FailedRequests { get; private set; }

    /// <summary>True once a FLUSH or durable write failed because an fdatasync failed.</summary>
    public bool SyncFailed { get; private set; }

    public async Task RunAsync(IBlockDevice device)
    {
        // Spread over the disk so allocation needs new L2 tables and refcount blocks (with 512-byte clusters).
        await WriteAsync(device, At(0), Pattern(Region, 1), fua: false);
        await WriteAsync(device, At(40), Pattern(Region, 2), fua: false);
        await FlushAsync(device);
        await WriteAsync(device, At(80), Pattern(Region, 3), fua: true);
        await WriteAsync(device, At(0), Pattern(Region, 4), fua: false); // in-place overwrite
        await ZeroAsync(device, At(40), Region);
        await WriteAsync(device, At(120) + 100, Pattern(300, 5), fua: false); // partial cluster: copy-on-write
        await TrimAsync(device, At(80), Region);
        await FlushAsync(device);
        await WriteAsync(device, At(160), Pattern(2 * Region, 6), fua: false);
        await WriteAsync(device, At(240), Pattern(Region, 7), fua: true);
        await WriteAsync(device, At(120) + 420, Pattern(60, 8), fua: false); // second partial write, same cluster: in place
        await FlushAsync(device);
        await WriteAsync(device, At(300), Pattern(Region, 9), fua: false);
        await FlushAsync(device);
    }

    /// <summary>Reads every range the oracle pins down and compares.</summary>
    public async Task VerifyAsync(IBlockDevice device, string context)
    {
        foreach (var (offset, state) in _ranges)
        {
            if (state.Expected is null || !state.Durable) continue;
            var back = new byte[state.Expected.Length];
            await device.ReadAsync(offset, back);
            if (!back.AsSpan().SequenceEqual(state.Expected))
                Assert.Fail($"{context}: range {offset}+{back.Length}, acknowledged as durable, reads back different data");
        }
    }

    private static long At(int index) => (long)index * Region;

    private Task WriteAsync(IBlockDevice device, long offset, byte[] data, bool fua) =>
        ChangeAsync(offset, data, fua, () => device.WriteAsync(offset, data, fua));

    private Task ZeroAsync(IBlockDevice device, long offset, int length) =>
        ChangeAsync(offset, new byte[length], false, () => device.ZeroAsync(offset, length, ZeroFlags.None));

    private async Task TrimAsync(IBlockDevice device, long offset, int length)
    {
        // After a trim the range may read as zero or as before: the oracle stops pinning it down.
        _ranges[offset] = new RangeState(null, false);
        try { await device.TrimAsync(offset, length, fua: false); }
        catch (BlockDeviceException e) { NoteFailure(e); }
    }

    private async Task ChangeAsync(long offset, byte[] expected, bool fua, Func<ValueTask> change)
    {
        foreach (var key in Overlapping(offset, expected.Length)) _ranges[key] = new RangeState(null, false);
        for (var attempt = 0; attempt < 2; attempt++)
        {
            try
            {
                await change();
                var durable = !mode.HasVolatileCache() || (fua && mode.HonoursFlush());
                _ranges[offset] = new RangeState(expected, durable);
                return;
            }
            catch (BlockDeviceException e)
            {
                NoteFailure(e);
            }
        }
    }

    private async Task FlushAsync(IBlockDevice device)
    {
        try
        {
            await device.FlushAsync();
            if (!mode.HonoursFlush()) return;
            foreach (var key in _ranges.Keys.ToList())
                if (_ranges[key].Expected is not null) _ranges[key] = _ranges[key] with { Durable = true };
        }
        catch (BlockDeviceException e)
        {
            NoteFailure(e);
        }
    }

    private void NoteFailure(BlockDeviceException e)
    {
        FailedRequests++;
        if (e.InnerException is HostIoException { Operation: "fdatasync" }) SyncFailed = true;
    }

    private List<long> Overlapping(long offset, int length)
    {
        var keys = new List<long>();
        foreach (var (key, state) in _ranges)
        {
            var keyLength = state.Expected?.Length ?? Region;
            if (key < offset + length && offset < key + keyLength) keys.Add(key);
        }
        return keys;
    }

    private static byte[] Pattern(int length, byte seed)
    {
        var data = new byte[length];
        for (var i = 0; i < data.Length; i++) data[i] = (byte)(seed * 37 + i % 253 + 1);
        return data;
    }

    private sealed record RangeState(byte[]? Expected, bool Durable);
}
