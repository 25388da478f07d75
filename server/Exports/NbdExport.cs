using NbdQcow.HostIo;
using NbdQcow.Image;
using NbdQcow.Protocol;

namespace NbdQcow.Server.Exports;

/// <summary>
/// One named export: a block device shared by every connection to it (so a FLUSH on one connection covers
/// writes acknowledged on all, which makes CAN_MULTI_CONN honest).
/// </summary>
public sealed class NbdExport
{
    public NbdExport(string name, IBlockDevice device, bool readOnly = false, string? description = null, IReadOnlyList<string>? bitmaps = null,
        HostIoBatch? hostIoBatch = null)
    {
        Name = name;
        HostIoBatch = hostIoBatch;
        Bitmaps = bitmaps ?? [];
        Device = device;
        ReadOnly = readOnly || (device.Features & BlockDeviceFeatures.ReadOnly) != 0;
        Description = description;
        Size = device.Size;
        Features = device.Features;
        var sizes = device.BlockSizes;
        // Never advertise a maximum above what the server accepts for one request.
        BlockSizes = new BlockSizeHints(
            Math.Max(1u, sizes.Minimum),
            Math.Max(Math.Max(1u, sizes.Minimum), sizes.Preferred),
            Math.Min(NbdLimits.MaxPayload, sizes.Maximum == 0 ? NbdLimits.MaxPayload : sizes.Maximum));
    }

    public string Name { get; }

    /// <summary>Groups the host I/O of one receive burst (io_uring); null when the export has no host-I/O engine of its own.</summary>
    public HostIoBatch? HostIoBatch { get; }

    public string? Description { get; }

    public IBlockDevice Device { get; }

    /// <summary>
    /// The engine whose data reads and writes only submit and return (io_uring), when nothing else on this export's
    /// data path blocks for I/O as a rule (no encryption); null otherwise. While its ring works, a READ or plain WRITE
    /// starts on the thread that received it instead of a pool thread (<see cref="StartsRequestsWhereReceived"/>).
    /// </summary>
    public HostIoEngine? SubmittingEngine { get; init; }

    /// <summary>A READ or WRITE costs its receiving thread only a submission: no hand-off to the thread pool needed.</summary>
    public bool StartsRequestsWhereReceived => SubmittingEngine is { Effective: AioEngine.IoUring };

    /// <summary>Where requests to this export are counted; null: not counted.</summary>
    public Metrics.ExportMetrics? Metrics { get; init; }

    /// <summary>Persistent dirty bitmaps offered as qemu:dirty-bitmap:NAME; context id = index + <see cref="NbdQemuMetaContexts.FirstBitmapContextId"/>.</summary>
    public IReadOnlyList<string> Bitmaps { get; }

    public bool ReadOnly { get; }

    public long Size { get; }

    public BlockDeviceFeatures Features { get; }

    public BlockSizeHints BlockSizes { get; }

    /// <summary>Transmission flags for a connection; SEND_DF only means something with structured replies.</summary>
    public NbdTransmissionFlags TransmissionFlags(bool structuredReplies)
    {
        var flags = NbdTransmissionFlags.HasFlags;
        var features = Features;
        if (ReadOnly)
        {
            flags |= NbdTransmissionFlags.ReadOnly;
        }
        if ((features & BlockDeviceFeatures.Flush) != 0)
        {
            flags |= NbdTransmissionFlags.SendFlush;
            if ((features & BlockDeviceFeatures.Fua) != 0)
            {
                flags |= NbdTransmissionFlags.SendFua;
            }
        }
        if (!ReadOnly)
        {
            if ((features & BlockDeviceFeatures.Trim) != 0)
            {
                flags |= NbdTransmissionFlags.SendTrim;
            }
            if ((features & BlockDeviceFeatures.Zero) != 0)
            {
                flags |= NbdTransmissionFlags.SendWriteZeroes;
                if ((features & BlockDeviceFeatures.FastZero) != 0)
                {
                    flags |= NbdTransmissionFlags.SendFastZero;
                }
            }
        }
        if ((features & BlockDeviceFeatures.Cache) != 0)
        {
            flags |= NbdTransmissionFlags.SendCache;
        }
        if ((features & BlockDeviceFeatures.MultiConn) != 0)
        {
            flags |= NbdTransmissionFlags.CanMultiConn;
        }
        if (structuredReplies)
        {
            flags |= NbdTransmissionFlags.SendDf;
        }
        return flags;
    }
}
